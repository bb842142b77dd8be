"""`tether reviewer add|remove|list`: the people whose signatures approve. Each change is signed by an
existing reviewer and audited; private keys stay in the user key folder, never in the workspace."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.cli.common import EXIT_CHECK_FAILED, fail, open_store, print_json, print_table, say, signer
from guardrails import keys, reviewers, trust
from guardrails.errors import TamperError

reviewer_app = typer.Typer(help="Reviewers: the people whose signed decisions approve checkpoints and "
                                "constitution changes.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ByOpt = Annotated[str, typer.Option("--by", help="An existing reviewer, whose key signs the change.")]


def _public_key_file(path: Path) -> str:
    """An Ed25519 public key in PEM from a file, or from standard input for `-`."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        key = serialization.load_pem_public_key(data)
    except (OSError, ValueError) as err:
        fail(f"{path}: not a PEM public key ({err})")
    if not isinstance(key, Ed25519PublicKey):
        fail(f"{path}: not an Ed25519 public key")
    return keys.public_hex(key)


@reviewer_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The new reviewer's name.")],
    by: ByOpt,
    public_key: Annotated[Path, typer.Option(
        "--public-key", help="Their Ed25519 public key (PEM; `-` reads standard input), made by them on their "
        "machine with `tether reviewer keygen NAME`. Their private key never leaves their key folder.")],
    note: Annotated[str | None, typer.Option("--note", help="Why (recorded in the audit log).")] = None,
) -> None:
    """Register a reviewer by the public key they made, signed by an existing reviewer."""
    problem = keys.name_problem(name)
    if problem:
        fail(problem)
    public = _public_key_file(public_key)
    _, store = open_store(ctx)
    key = signer(store, by)
    reviewers.add(store, name, public, key, note)
    root = trust.require(store, reviewers.workspace_id(store))
    say(f"{name} is a reviewer (key {keys.fingerprint(public)[:16]}), added by {by}; in their own key folder "
        f"they pin this workspace once with `tether reviewer pin --root {root.fingerprint}`")


@reviewer_app.command("keygen")
def keygen(name: Annotated[str, typer.Argument(help="Your reviewer name.")]) -> None:
    """Create your key pair in the user key folder and print the public key (PEM) to hand to an
    existing reviewer for `tether reviewer add NAME --public-key FILE`."""
    created = keys.create_key(keys.resolve_keys_dir(), name, os.environ.get(keys.PASSPHRASE_ENV))
    typer.echo(keys.public_pem(created.public_hex), nl=False)


@reviewer_app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The reviewer to remove.")],
    by: ByOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
) -> None:
    """Remove a reviewer (their earlier signatures stand; new ones are refused). Signed by a reviewer."""
    _, store = open_store(ctx)
    key = signer(store, by)
    reviewers.remove(store, name, key, reason)
    say(f"{name} is no longer a reviewer (removed by {by})")


@reviewer_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Registered reviewers: name, key fingerprint, who added them and when; verified by replaying every
    signed registration (exit 1 if one was forged)."""
    _, store = open_store(ctx, readonly=True)
    everyone = reviewers.registry(store, include_removed=True)
    added = {e.name: e for e in store.reviewer_events() if e.action == "add"}
    rows = [{"name": r.name, "fingerprint": r.fingerprint, "active": r.removed_at_seq is None,
             "added_by": added[r.name].signed_by, "added_at": added[r.name].at,
             "public_key_pem": keys.public_pem(r.public_hex)} for r in everyone.values()]
    if as_json:
        print_json(rows)
        return
    print_table("reviewers", ["name", "fingerprint", "active", "added_by", "added_at"],
                [[r["name"], r["fingerprint"][:16], "yes" if r["active"] else "removed", r["added_by"], r["added_at"]]
                 for r in rows])


@reviewer_app.command("pin")
def pin(
    ctx: typer.Context,
    root: Annotated[str | None, typer.Option(
        "--root", help="The fingerprint of the workspace's first reviewer's key, as their `tether init` printed it "
        "(at least 16 hex digits), learned from them, not from the workspace.")] = None,
) -> None:
    """Pin a workspace's root of trust in your key folder, once, before you review it from this folder.
    Every later check of its reviewers starts from this pin, which the workspace's writers cannot reach."""
    _, store = open_store(ctx, readonly=True)
    workspace_id = store.meta(reviewers.WORKSPACE_ID_KEY)
    events = store.reviewer_events()
    if workspace_id is None or not events:
        fail("this workspace has no reviewers yet: `tether init` pins its root of trust")
    first = events[0]
    if root is None or len(root) < 16:
        fail(f"pass --root with the first reviewer's key fingerprint, as they give it to you; this workspace "
             f"claims '{first.name}' with key {first.fingerprint} (check it with them before you pin)")
    if not first.fingerprint.startswith(root.lower()):
        fail(f"the workspace's first reviewer is '{first.name}' with key {first.fingerprint[:16]}, not the key "
             f"{root[:16]} you expected: do not review it from this folder until you know why", EXIT_CHECK_FAILED)
    existed = trust.load(workspace_id) is not None
    try:
        pinned = trust.pin(store, workspace_id, first.name, first.public_key, store.path.parent)
        reviewers.registry(store)
    except TamperError:
        if not existed:
            trust.unpin(workspace_id)  # a pin that fails its own check is not left behind
        raise
    say(f"pinned workspace {workspace_id}: first reviewer '{pinned.reviewer}', key {pinned.fingerprint[:16]}, "
        f"in {trust.folder() / 'trust'}")
