"""`tether export pairs RUN_ID`: a run's preference pairs in TRL's format, to train elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import fail, open_store, say
from agent.review.export import export_pairs

export_app = typer.Typer(help="Export what a run made (preference pairs) for use outside tether.",
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
