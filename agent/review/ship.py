"""`tether export adapter`: an approved adapter leaves tether, as the PEFT adapter folder or merged into
its base model, in a folder that says what it is (README.md, the model card), what it holds
(manifest.json) and how to check it (SHA256SUMS, for `sha256sum -c`).

Only what the gate would activate leaves. The checkpoint must be recorded as approved (the gate
activated it once) and then pass `gate.verify_approved`, the very checks activation makes from what
is signed: the reviewers' signatures, the invariant report, the pinned base model on disk and the
adapter's bytes. A refusal writes nothing. An export is built in a hidden staging folder beside DIR
and renamed into place at the end, so DIR never holds half an export; a killed export leaves only
that hidden `.DIR.partial-*` folder behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.review.card import CardInputs, CardKind, invariant_digests, model_card
from agent.review.export import CARD_NAME, ExportError
from guardrails import gate
from memory import Checkpoint, Store
from policies.adapters import (
    ADAPTER_CONFIG_NAME,
    read_verified_adapter,
    read_verified_adapter_files,
    verify_adapter,
)
from tether_types import AdapterRef, sha256_file

Say = Callable[[str], None]

FORMAT = "tether-export-adapter/1"  # the manifest's layout; bumped when a field changes meaning
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"


def export_adapter(store: Store, home: Path, checkpoint_id: str, out: Path, *, merge: bool, force: bool,
                   say: Say) -> dict[str, Any]:
    """Export approved checkpoint `checkpoint_id` into `out` and return the manifest written there.
    ExportError (exit 2): not an approved adapter, or an unusable `out`; TamperError / TransientError
    (exit 1): it failed, or could not run, a check activation makes. Nothing is written on a refusal."""
    say(f"verifying {checkpoint_id}: signed approval, invariant report, pinned base model, adapter files")
    approved = approved_checkpoint(store, checkpoint_id)
    ck = approved.checkpoint
    adapter_folder = store.resolve(ck.path)
    target = destination(out, force, home, (adapter_folder, approved.base_folder))
    say(f"verified: approved by {', '.join(approved.signoff.approved_by)} (signatures verified); base model "
        "and adapter files match their digests")
    kind: CardKind = "merged" if merge else "adapter"
    with _staging(target) as staging:
        dtype: str | None = None
        if merge:
            lora = read_verified_adapter(adapter_folder, ck.sha256 or "").config  # for the card
            dtype = _write_merged(approved, adapter_folder, staging, say)
        else:
            lora = _write_adapter(staging, adapter_folder, ck)
        say("writing the model card, manifest.json and SHA256SUMS")
        (staging / CARD_NAME).write_text(model_card(store, CardInputs(ck, approved.signoff, kind=kind, lora=lora)),
                                         encoding="utf-8")
        manifest = _manifest(store, approved, kind, dtype, _digests(staging))
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (staging / SUMS_NAME).write_text("".join(f"{sha}  {name}\n" for name, sha in _digests(staging).items()))
        _fsync_tree(staging)  # the bytes are on disk before the name says the export exists
        _move_into_place(staging, target)
    say(f"exported {ck.id} ({kind}) to {target}: {len(manifest['files']) + 2} files; check them with "
        f"`cd {target} && sha256sum -c {SUMS_NAME}`")
    return manifest


def approved_checkpoint(store: Store, checkpoint_id: str) -> gate.ApprovedAdapter:
    """The checkpoint, if it is an adapter the gate activated and that passes activation's checks now."""
    ck = store.get_checkpoint(checkpoint_id)
    if ck is None:
        raise ExportError(f"no checkpoint '{checkpoint_id}' (see `tether checkpoints`); nothing was written")
    if ck.sha256 is None:
        raise ExportError(f"{ck.id} is the base model of run {ck.run_id}: it has no adapter to export; nothing "
                          "was written")
    source = (ck.metrics or {}).get("inherited_from")
    if ck.status == "approved" and source:
        # A run started from another run's adapter holds a copy; the source's signed approval vouches for it.
        raise ExportError(f"{ck.id} is a copy of {source} (`tether run --from`): export {source}, whose signed "
                          "approval vouches for these files")
    if ck.status != "approved":
        raise ExportError(_not_approved(store, ck))
    return gate.verify_approved(store, ck)


def _not_approved(store: Store, ck: Checkpoint) -> str:
    approval = store.approval_for_subject("checkpoint", ck.id)
    if ck.status == "pending" and approval is not None and approval.status == "approved":
        return (f"{ck.id} is approved but not yet activated: `tether resume {ck.run_id}` activates it (after the "
                "gate's checks), then export it; nothing was written")
    return f"{ck.id} is {ck.status}: only an approved adapter is exported; nothing was written"


def destination(out: Path, force: bool, home: Path, sources: tuple[Path, ...]) -> Path:
    """`out` as an absolute path, if it may be written: a new or empty folder (any folder with `force`)
    that is not, and does not hold, the workspace, and does not overlap what the export reads."""
    target = Path(os.path.abspath(out.expanduser()))
    if target.is_symlink():
        raise ExportError(f"--out {out} is a symbolic link: name the folder itself; nothing was written")
    if target.exists() and not target.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder; nothing was written")
    if not target.parent.is_dir() and target.parent.exists():
        raise ExportError(f"--out {out}: {target.parent} is not a folder; nothing was written")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ExportError(f"--out {out} is not empty; choose a new folder, or --force to replace it; nothing was "
                          "written")
    real, workspace = target.resolve(), home.resolve()
    if real == workspace or real in workspace.parents:
        raise ExportError(f"--out {out} is or holds the workspace {home}; choose a folder outside it; nothing "
                          "was written")
    for source in (s.resolve() for s in sources):
        if real == source or real in source.parents or source in real.parents:
            raise ExportError(f"--out {out} overlaps {source}, which the export reads; choose another folder; "
                              "nothing was written")
    return target


@contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A hidden folder beside `target` (same file system, so the final rename is atomic), removed unless
    it was renamed into place. OSError while writing becomes ExportError, as in `export pairs`."""
    staging = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        yield staging
    except OSError as err:
        raise ExportError(f"cannot write {target}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_adapter(folder: Path, adapter_folder: Path, ck: Checkpoint) -> dict[str, Any]:
    """The adapter's two files, from the bytes that were verified as they were read, checked again where
    they landed. Returns the LoRA config (for the card)."""
    files = read_verified_adapter_files(adapter_folder, ck.sha256 or "")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    verify_adapter(folder, ck.sha256 or "")
    config = json.loads(files[ADAPTER_CONFIG_NAME])
    return config if isinstance(config, dict) else {}


def _write_merged(approved: gate.ApprovedAdapter, adapter_folder: Path, staging: Path, say: Say) -> str:
    """The base with the adapter merged in (and the base's tokenizer), into `staging`. Returns the dtype."""
    from policies.merge import save_merged  # torch: only for --merge

    ck = approved.checkpoint
    return save_merged(approved.base_folder, AdapterRef(id=ck.id, path=adapter_folder, sha256=ck.sha256 or ""),
                       staging, say)


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by its relative path, in `sha256sum` order."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest(store: Store, approved: gate.ApprovedAdapter, kind: CardKind, dtype: str | None,
              files: Mapping[str, str]) -> dict[str, Any]:
    ck, run, signed = approved.checkpoint, approved.run, approved.signoff
    base = run.base_model or {}
    constitution = (ck.invariant_report or {}).get("constitution") or {}
    return {
        "format": FORMAT, "kind": kind, "checkpoint": ck.id, "run_id": ck.run_id, "round": ck.round,
        "parent": ck.parent, "adapter_sha256": ck.sha256, "dtype": dtype,
        "base_model": {"ref": base.get("ref"), "sha256": base.get("sha256")},
        "constitution": {"version": constitution.get("version"), "sha256": constitution.get("sha256"),
                         "invariants": invariant_digests(store, constitution.get("version"))},
        "approval": {"id": approved.approval.id, "required": signed.required, "approved_by": list(signed.approved_by),
                     "signatures": [{k: s.get(k) for k in ("reviewer", "decision", "time", "fingerprint")}
                                    for s in signed.signatures]},
        "exported_at": store.now(),
        "files": dict(files),
    }


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders that name them
        _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished export to `target`. What `target` held (empty, or replaced with --force) is moved
    aside first and deleted last: a crash in between leaves it hidden beside `target`, never lost."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.replaced-{secrets.token_hex(4)}"
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        if old is not None:
            os.replace(old, target)  # put back what was there
        raise
    _fsync(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
