"""`tether export pairs RUN_ID` and `tether export adapter CHECKPOINT_ID`: what a run made, for use outside
tether (a run's preference pairs to train elsewhere; an approved adapter, or the model merged with it, to
serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import fail, open_store, print_json, say
from agent.review.export import export_pairs
from agent.review.ship import export_adapter

export_app = typer.Typer(help="Export what a run made (preference pairs, approved adapters) for use outside tether.",
                         no_args_is_help=True)


@export_app.command("pairs")
def pairs(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run whose pairs to export.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for pairs.jsonl, dataset/ and manifest.json.")],
    round_no: Annotated[int | None, typer.Option("--round", min=1, help="Only this round (default: all).")] = None,
) -> None:
    """Write the pairs as JSONL with TRL's prompt/chosen/rejected fields, as a `datasets` folder
    (`load_from_disk`), and a manifest with each pair's round, prompt id and margin."""
    _, store = open_store(ctx)
    if store.get_run(run_id) is None:
        fail(f"no run '{run_id}' (see `tether status`)")
    manifest = export_pairs(store, run_id, out, round_no)
    say(f"wrote {manifest['pairs']} pairs of rounds {manifest['rounds']} to {out} (pairs.jsonl, dataset/, "
        "manifest.json)")


@export_app.command("adapter")
def adapter(
    ctx: typer.Context,
    checkpoint_id: Annotated[str, typer.Argument(help="The approved checkpoint to export (see `tether checkpoints`).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to create (or an empty one) for the export.")],
    merge: Annotated[bool, typer.Option("--merge", help="Write the base model with the adapter merged into its "
                                        "weights (loads with AutoModelForCausalLM alone), not the adapter.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a --out folder that is not empty.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as one JSON document.")] = False,
) -> None:
    """Write an approved adapter (PEFT folder: adapter_config.json + adapter_model.safetensors) or, with
    --merge, the merged model and its tokenizer, with a model card (README.md), manifest.json and
    SHA256SUMS (`sha256sum -c`). Only an adapter that passes the checks activation makes is exported:
    not approved is exit 2, a failed check (forged approval, changed files, changed base model) exit 1;
    nothing is written either way."""
    ws, store = open_store(ctx, readonly=True)
    manifest = export_adapter(store, ws.home, checkpoint_id, out, merge=merge, force=force, say=say)
    if json_out:
        print_json(manifest)
