"""The `inputs` section: where a run may read the files its config and constitution name, and how much
of them (guardrails/inputs.py enforces it). Fixed for a run once it starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from agent.sections.base import _Section
from guardrails.inputs import MAX_FILE_BYTES, MAX_LINE_BYTES, InputLimits, Inputs


class InputsConfig(_Section):
    roots: list[str] = Field(
        default_factory=list, max_length=32,
        description="Data roots: folders outside the workspace a run may read its input files from (world "
        "data, probe files), at most 32; relative paths are relative to the config file's folder. The "
        "workspace is always one; a reviewer key folder never is, whatever is listed here.",
    )
    max_line_bytes: int = Field(
        MAX_LINE_BYTES, ge=1024, le=MAX_FILE_BYTES,
        description=f"Longest line (JSONL, JSON, CSV) or record (Parquet, save_to_disk) an input file may hold, "
        f"in bytes, 1024 to {MAX_FILE_BYTES}; default {MAX_LINE_BYTES} (1 MiB).",
    )
    max_file_bytes: int = Field(
        MAX_FILE_BYTES, ge=1024, le=64 * 2**30,
        description=f"Largest input file (or save_to_disk folder) in bytes, 1024 to {64 * 2**30} (64 GiB); "
        f"default {MAX_FILE_BYTES} (256 MiB).",
    )

    @field_validator("roots")
    @classmethod
    def _named(cls, roots: list[str]) -> list[str]:
        if any(not r.strip() for r in roots):
            raise ValueError("a data root is an empty path: name a folder")
        return roots

    @model_validator(mode="after")
    def _line_fits_file(self) -> InputsConfig:
        if self.max_line_bytes > self.max_file_bytes:
            raise ValueError(f"max_line_bytes {self.max_line_bytes} is more than max_file_bytes {self.max_file_bytes}")
        return self

    def anchored(self, folder: Path) -> InputsConfig:
        """The same section with every root absolute: a relative one is taken from `folder` (the config's)."""
        roots = [str((folder / Path(r).expanduser()).resolve()) for r in self.roots]
        return self.model_copy(update={"roots": roots})

    def with_root(self, folder: Path) -> InputsConfig:
        """The same section with `folder` (the config's own) a data root too: the files a config names next to
        it are readable wherever it lies (a reviewer key folder still never is)."""
        root = str(folder.resolve())
        return self if root in self.roots else self.model_copy(update={"roots": [*self.roots, root]})

    def limits(self) -> InputLimits:
        return InputLimits(line_bytes=self.max_line_bytes, file_bytes=self.max_file_bytes)

    def confined_to(self, workspace: Path) -> Inputs:
        """What the run's readers confine their files to: the workspace and these roots, no key folder. Roots
        are absolute once `load_config` anchored them; one that is not (a config built in code) is the
        workspace's."""
        return Inputs(workspace=workspace, roots=tuple(workspace / Path(r).expanduser() for r in self.roots),
                      limits=self.limits())
