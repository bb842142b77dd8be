"""What a reviewer trusts about a workspace, kept in the reviewer's own folder, where the run's writes do
not reach.

- **The root** (`trust/<workspace>.json`): the first reviewer's name and public key and the workspace's
  genesis digest (the hash of audit entry 1, `workspace.init`), pinned at `tether init`, or by
  `tether reviewer pin --root FINGERPRINT` in another reviewer's folder. The reviewer registry is
  replayed from it: a registry whose first event is anyone else's, or a log whose first entry is another,
  is refused. A workspace with no pin in the folder is refused too (fail closed), with the command that
  pins it.
- **The witness** (`witness/<workspace>.json`): the audit head (seq, hash) the reviewer's commands last
  saw, as in transparency-log witnessing. Since each entry's hash covers every entry before it, one head
  suffices: a chain cut below it, or rewritten at or before it, no longer carries that hash there.

Both files are JSON written through a temporary file and a rename, in folders of mode 0700.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from guardrails import keys
from guardrails.errors import TamperError
from memory import Store

TRUST_FORMAT = "tether.trust/1"
WITNESS_FORMAT = "tether.witness/1"


@dataclass(frozen=True)
class TrustRoot:
    workspace: str
    genesis: str  # hash of audit entry 1 (workspace.init)
    reviewer: str
    public_key: str  # raw Ed25519 public key, hex
    pinned_at: str
    home: str  # where the workspace was when pinned; informational (workspaces move)

    @property
    def fingerprint(self) -> str:
        return keys.fingerprint(self.public_key)


@dataclass(frozen=True)
class Witnessed:
    workspace: str
    seq: int
    hash: str
    at: str
    command: str


def folder() -> Path:
    """The reviewer's folder: the key folder ($TETHER_KEYS_DIR, else the user config dir)."""
    return keys.resolve_keys_dir()


def _path(kind: str, workspace: str) -> Path:
    if not workspace.replace("-", "").isalnum():
        raise TamperError(f"the workspace id {workspace!r} is malformed")
    return folder() / kind / f"{workspace}.json"


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read(path: Path, fmt: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise TamperError(f"{path} cannot be read ({err}); restore it from the reviewer's backup") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise TamperError(f"{path} is not a {fmt} file")
    return doc


# -- the root ---------------------------------------------------------------------------------------


def genesis(store: Store) -> str:
    entry = store.audit_entry(1)
    if entry is None or entry.action != "workspace.init":
        raise TamperError("audit entry 1 is not the workspace's creation (workspace.init)")
    return entry.hash


def pin(store: Store, workspace: str, reviewer: str, public_hex: str, home: Path) -> TrustRoot:
    """Pin the root in this reviewer's folder; an existing pin for the workspace must agree with it."""
    root = TrustRoot(workspace, genesis(store), reviewer, public_hex, store.now(), str(home))
    path = _path("trust", workspace)
    existing = load(workspace)
    if existing is not None:
        if (existing.genesis, existing.reviewer, existing.public_key) != (root.genesis, reviewer, public_hex):
            raise TamperError(f"{path} already pins another root for workspace {workspace} (first reviewer "
                              f"'{existing.reviewer}', key {existing.fingerprint[:16]}); this workspace does "
                              "not match it")
        return existing
    _write(path, {"format": TRUST_FORMAT, **asdict(root)})
    return root


def unpin(workspace: str) -> None:
    """Undo a pin made by this command a moment ago whose workspace then failed its replay."""
    _path("trust", workspace).unlink(missing_ok=True)


def load(workspace: str) -> TrustRoot | None:
    doc = _read(_path("trust", workspace), TRUST_FORMAT)
    if doc is None:
        return None
    try:
        return TrustRoot(**{k: str(doc[k]) for k in TrustRoot.__dataclass_fields__})
    except KeyError as err:
        raise TamperError(f"{_path('trust', workspace)} lacks {err}") from None


def require(store: Store, workspace: str) -> TrustRoot:
    """The pinned root, checked against the log's genesis; refuses a workspace nobody here pinned."""
    root = load(workspace)
    if root is None:
        raise TamperError(f"no root of trust for workspace {workspace} in {folder() / 'trust'}: nothing it says "
                          "about its reviewers can be verified here. A reviewer of this workspace pins it with "
                          "`tether reviewer pin --root FINGERPRINT` (the first reviewer's key fingerprint, as "
                          "printed by their `tether init`), or set $TETHER_KEYS_DIR to the folder that has it")
    if genesis(store) != root.genesis:
        raise TamperError(f"audit entry 1 is not the workspace.init entry pinned in {_path('trust', workspace)}: "
                          "the log was re-rooted")
    return root


# -- the witness ------------------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def witnessed(workspace: str, path: Path | None = None) -> Witnessed | None:
    doc = _read(path or _path("witness", workspace), WITNESS_FORMAT)
    if doc is None:
        return None
    try:
        return Witnessed(str(doc["workspace"]), int(doc["seq"]), str(doc["hash"]), str(doc["at"]),
                         str(doc["command"]))
    except (KeyError, ValueError) as err:
        raise TamperError(f"{path or _path('witness', workspace)} is malformed ({err})") from None


def witness_problem(store: Store, seen: Witnessed) -> str | None:
    """Why the log no longer carries what a reviewer saw, or None."""
    end, _ = store.audit_head()
    entry = store.audit_entry(seen.seq) if seen.seq > 0 else None
    when = f"a reviewer's `{seen.command}` saw entry {seen.seq} at {seen.at}"
    if seen.seq > end:
        return f"truncated: {when}, but the log ends at {end}"
    if seen.seq > 0 and (entry is None or entry.hash != seen.hash):
        return f"rewritten: {when} with another hash; the chain was changed at or before entry {seen.seq}"
    return None


def check_witness(store: Store, workspace: str) -> None:
    seen = witnessed(workspace)
    if seen is not None:
        problem = witness_problem(store, seen)
        if problem:
            raise TamperError(f"{problem} (if you restored this workspace from a backup on purpose, remove "
                              f"{_path('witness', workspace)} to witness it anew)")


def record(store: Store, workspace: str, command: str) -> None:
    """Witness the current head: only forward, and never over a head the log no longer carries (that
    evidence stays for `tether audit verify`)."""
    path = _path("witness", workspace)
    with _locked(path):
        seen = witnessed(workspace)
        seq, head = store.audit_head()
        if seen is not None and (seen.seq >= seq or witness_problem(store, seen)):
            return
        _write(path, {"format": WITNESS_FORMAT, "workspace": workspace, "seq": seq, "hash": head,
                      "at": store.now(), "command": command})
