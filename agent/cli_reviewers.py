"""`tether reviewer add|remove|list`: the people whose signatures approve. Each change is signed by an
existing reviewer and audited; private keys stay in the user key folder, never in the workspace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.cli_common import EXIT_CHECK_FAILED, fail, open_store, print_json, print_table, say, signer
from guardrails import keys, reviewers
from guardrails.errors import GateError, TamperError

reviewer_app = typer.Typer(help="Reviewers: the people whose signed decisions approve checkpoints and "
                                "constitution changes.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ByOpt = Annotated[str, typer.Option("--by", help="An existing reviewer, whose key signs the change.")]


def _public_key_file(path: Path) -> str:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
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
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="Their Ed25519 public key (PEM), made on their machine with `tether reviewer keygen`. "
        "Without it, a key pair is created here in the user key folder.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why (recorded in the audit log).")] = None,
) -> None:
    """Register a reviewer, signed by an existing one."""
    _, store = open_store(ctx)
    problem = keys.name_problem(name)
    if problem:
        fail(problem)
    key = signer(store, by)
    folder = keys.resolve_keys_dir()
    if public_key is not None:
        public = _public_key_file(public_key)
    elif keys.has_key(folder, name):
        public = keys.load_key(folder, name, os.environ.get(keys.PASSPHRASE_ENV)).public_hex
    else:
        public = keys.create_key(folder, name, os.environ.get(keys.PASSPHRASE_ENV)).public_hex
    try:
        reviewers.add(store, name, public, key, note)
    except TamperError as err:
        fail(str(err), EXIT_CHECK_FAILED)
    except GateError as err:
        fail(str(err))
    say(f"{name} is a reviewer (key {keys.fingerprint(public)[:16]}), added by {by}")


@reviewer_app.command("keygen")
def keygen(name: Annotated[str, typer.Argument(help="Your reviewer name.")]) -> None:
    """Create your key pair in the user key folder and print the public key (PEM) to hand to an
    existing reviewer for `tether reviewer add NAME --public-key FILE`."""
    try:
        created = keys.create_key(keys.resolve_keys_dir(), name, os.environ.get(keys.PASSPHRASE_ENV))
    except keys.KeyStoreError as err:
        fail(str(err))
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
    try:
        reviewers.remove(store, name, key, reason)
    except TamperError as err:
        fail(str(err), EXIT_CHECK_FAILED)
    except GateError as err:
        fail(str(err))
    say(f"{name} is no longer a reviewer (removed by {by})")


@reviewer_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Registered reviewers: name, key fingerprint, who added them and when; verified by replaying every
    signed registration (exit 1 if one was forged)."""
    _, store = open_store(ctx, readonly=True)
    try:
        everyone = reviewers.registry(store, include_removed=True)
    except TamperError as err:
        fail(str(err), EXIT_CHECK_FAILED)
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
