"""Entry point: ``python -m policies.train_job SPEC.json [--result RESULT.json] [--progress]``.

Runs the :class:`policies.train_spec.TrainJob` in SPEC.json and writes the
:class:`policies.train_spec.TrainResult` as JSON to RESULT.json (default: ``SPEC.result.json`` next to
the spec; written atomically, by the main process only). Also works under
``accelerate launch -m policies.train_job SPEC.json``.

Exit codes: 0 ok; 1 the job failed (traceback on stderr); 2 bad usage or an invalid spec.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from policies.train_spec import TrainJob, result_path_for


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policies.train_job", description=__doc__.split("\n")[0]
    )
    parser.add_argument("spec", type=Path, help="TrainJob JSON file")
    parser.add_argument(
        "--result", type=Path, default=None, help="where to write the TrainResult JSON"
    )
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)

    try:
        job = TrainJob.from_json(args.spec.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: invalid train job spec {args.spec}: {exc}", file=sys.stderr)
        return 2

    # torch's @record writes a rank's traceback where torchrun (accelerate launch on several processes) reads it,
    # so the launch fails with the failed rank's error; outside torchrun it only re-raises. Imports torch: only now.
    from torch.distributed.elastic.multiprocessing.errors import record

    record(_train)(job, args.result or result_path_for(args.spec), args.progress)
    return 0


def _train(job: TrainJob, result_path: Path, progress: bool) -> None:
    from policies.training import run_train_job  # imports torch and trl: after the spec is read

    result = run_train_job(job, progress=progress)
    if _is_main_process():
        tmp = result_path.with_name(f".{result_path.name}.tmp")
        tmp.write_text(result.to_json(), encoding="utf-8")
        os.replace(tmp, result_path)


if __name__ == "__main__":
    sys.exit(main())
