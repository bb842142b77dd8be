"""LoRA adapter references and integrity checks.

An adapter directory is what ``PeftModel.save_pretrained`` writes: ``adapter_model.safetensors``
(the weights, always safetensors, never pickle) and ``adapter_config.json`` (rank, alpha, targets:
it changes what the weights do, so it is covered too). An adapter is identified by the SHA-256 of
its manifest, the ``sha256sum`` listing of both files, reproducible by hand with

    cd ADAPTER_DIR && sha256sum adapter_config.json adapter_model.safetensors | sha256sum

Every load goes through :func:`read_verified_adapter`, which hashes the exact bytes it then
deserialises, so there is no window between "verified" and "loaded" in which a file could be swapped.
A directory that also holds a pickle file (``adapter_model.bin`` and the like) is refused outright:
nothing here unpickles, but a tool that prefers such a file would run whatever it contains.

torch is imported only where tensors are built, so the guardrails that verify digests stay light.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tether_types import TetherError

if TYPE_CHECKING:
    import torch

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"

# Suffixes of pickle-based weight formats (torch.save, pickle); loading any of them can run code.
_PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle"})

_CHUNK = 1 << 20


class AdapterIntegrityError(TetherError, RuntimeError):
    """An adapter's files are missing, do not match the recorded SHA-256, or include a pickle file."""


def adapter_weights_path(adapter_dir: Path) -> Path:
    """Path of the safetensors weights file inside an adapter directory."""
    return Path(adapter_dir) / ADAPTER_WEIGHTS_NAME


ADAPTER_FILES = (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME)  # sorted, as sha256sum lists them


@dataclass(frozen=True)
class VerifiedAdapter:
    """The bytes of an adapter's files, read once and checked against the expected digest."""

    config: dict
    weights: bytes


def _manifest_digest(contents: dict[str, bytes]) -> str:
    manifest = "".join(f"{hashlib.sha256(contents[name]).hexdigest()}  {name}\n" for name in ADAPTER_FILES)
    return hashlib.sha256(manifest.encode()).hexdigest()


def _refuse_pickle_files(adapter_dir: Path) -> None:
    """Raise :class:`AdapterIntegrityError` naming the first pickle-format file in ``adapter_dir``.

    Only names are looked at; no file is opened.
    """
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        return  # _read_files reports the missing files
    for path in sorted(adapter_dir.iterdir()):
        if path.suffix.lower() in _PICKLE_SUFFIXES:
            raise AdapterIntegrityError(
                f"adapter directory {adapter_dir} contains a pickle-format file {path.name}; "
                f"adapters load only from {ADAPTER_WEIGHTS_NAME}: delete {path} (it is never loaded)"
            )


def _read_files(adapter_dir: Path) -> dict[str, bytes]:
    _refuse_pickle_files(adapter_dir)
    contents = {}
    for name in ADAPTER_FILES:
        path = Path(adapter_dir) / name
        if not path.is_file():
            raise AdapterIntegrityError(f"adapter file not found: {path}")
        contents[name] = path.read_bytes()
    return contents


def adapter_sha256(adapter_dir: Path) -> str:
    """Hex SHA-256 of the adapter's manifest (both files; see the module docstring)."""
    return _manifest_digest(_read_files(adapter_dir))


def _check(adapter_dir: Path, expected_sha256: str, actual: str) -> None:
    if actual.lower() != expected_sha256.strip().lower():
        raise AdapterIntegrityError(
            f"adapter integrity check failed for {adapter_dir}: "
            f"expected sha256 {expected_sha256}, actual sha256 {actual}"
        )


def verify_adapter(adapter_dir: Path, expected_sha256: str) -> None:
    """Raise :class:`AdapterIntegrityError` (naming path, expected and actual) unless the files match."""
    _check(Path(adapter_dir), expected_sha256, adapter_sha256(adapter_dir))


def read_verified_adapter_files(adapter_dir: Path, expected_sha256: str) -> dict[str, bytes]:
    """Both files' bytes by name, read once and verified: what is written elsewhere is what was hashed."""
    contents = _read_files(adapter_dir)
    _check(Path(adapter_dir), expected_sha256, _manifest_digest(contents))
    return contents


def read_verified_adapter(adapter_dir: Path, expected_sha256: str) -> VerifiedAdapter:
    """Read both files once, verify the digest of exactly those bytes and return them."""
    contents = read_verified_adapter_files(adapter_dir, expected_sha256)
    try:
        config = json.loads(contents[ADAPTER_CONFIG_NAME])
    except ValueError as err:
        raise AdapterIntegrityError(f"adapter config in {adapter_dir} is not valid JSON: {err}") from None
    return VerifiedAdapter(config=config, weights=contents[ADAPTER_WEIGHTS_NAME])


def load_verified_adapter_weights(
    adapter_dir: Path, expected_sha256: str
) -> dict[str, torch.Tensor]:
    """The adapter's safetensors state dict (CPU tensors), deserialised from the verified bytes."""
    from safetensors.torch import load as load_safetensors

    return load_safetensors(read_verified_adapter(adapter_dir, expected_sha256).weights)
