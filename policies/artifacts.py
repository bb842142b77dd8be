"""Digests of model folders (no torch): a base model is pinned per run by what its files hold.

The manifest is the ``sha256sum`` listing of every file in the folder (recursively, sorted, skipping
hidden files and READMEs), so it is reproducible by hand; its SHA-256 is the model's digest. Weights,
config and tokenizer all count: any of them changes what the model does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tether_types import TetherError

_CHUNK = 1 << 20


class ModelIntegrityError(TetherError, RuntimeError):
    """A model folder no longer holds the files that were pinned."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    sha256: str
    files: dict[str, str]  # relative path -> sha256

    def to_json(self, ref: str) -> dict[str, object]:
        return {"ref": ref, "sha256": self.sha256, "files": dict(self.files)}


def _counted(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    return path.is_file() and not any(p.startswith(".") for p in rel.parts) and not rel.name.upper().startswith(
        "README")


def model_manifest(folder: Path) -> ModelManifest:
    """The digest of a saved model folder (``save_pretrained`` output or a hub cache snapshot)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if _counted(p, folder)}
    if not files:
        raise ModelIntegrityError(f"model folder {folder} holds no files")
    listing = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
    return ModelManifest(hashlib.sha256(listing.encode()).hexdigest(), files)


def verify_model(folder: Path, pinned: dict[str, object]) -> None:
    """Raise ModelIntegrityError naming the first file added, removed or changed since pinning."""
    expected = pinned.get("files")
    if not isinstance(expected, dict):
        raise ModelIntegrityError("the pinned base model record has no file list")
    actual = model_manifest(folder)
    if actual.sha256 == pinned.get("sha256"):
        return
    for name in sorted(set(expected) | set(actual.files)):
        if name not in actual.files:
            raise ModelIntegrityError(f"base model file {Path(folder) / name} is missing (pinned when the run started)")
        if name not in expected:
            raise ModelIntegrityError(f"base model file {Path(folder) / name} was added after the run started")
        if actual.files[name] != expected[name]:
            raise ModelIntegrityError(f"base model file {Path(folder) / name} changed since the run started "
                                      f"(sha256 {expected[name]} -> {actual.files[name]})")
    raise ModelIntegrityError(f"base model {folder} does not match its pinned digest")


def model_folder(ref: str) -> Path:
    """The local folder a model reference loads from: a directory as given, or a hub id's snapshot in
    the local Hugging Face cache (never downloaded: FileNotFoundError when it is not cached)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(ref, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError) as err:
        raise FileNotFoundError(
            f"model {ref!r} is neither a local folder nor in the local Hugging Face cache ({err}); nothing is "
            "downloaded: save it with save_pretrained and point model.base at the folder") from None
