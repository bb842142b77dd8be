"""wandb tracking: one wandb run per tether run across processes, `round` as the step metric, per-step
training metrics, held-out and invariant rates, the decision table and approved adapters as artifacts;
read back from the offline `.wandb` files with wandb's own protobuf records. Nothing leaves the machine."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import TrackingConfig
from agent.run.tracking import DECISION_COLUMNS, Tracker
from memory import Decision

RUN_ID = "run-20261127-abc123"


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """wandb offline with no key, its user folders in tmp, and no socket of this process may leave the
    machine (wandb talks to its own core process over loopback or a unix socket)."""
    for name in ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "user" / name.lower()))
    connect = socket.socket.connect

    def local_only(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_INET and address[0] not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"tracking tried to reach {address}")
        if self.family == socket.AF_INET6:
            raise AssertionError(f"tracking tried to reach {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    yield


# -- reading a .wandb file: LevelDB log framing around wandb's protobuf `Record`s -------------------

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    """Every record of a `.wandb` transaction log: a 7-byte W&B header (`:W&B`, magic 0xBEE1, version
    0), then 32 KiB blocks of chunks (crc32c, length, type FULL/FIRST/MIDDLE/LAST) that together carry
    serialized `wandb_internal_pb2.Record`s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), path
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        else:
            assert kind == LAST, kind
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        records.append(record)
    return records


def pieces(directory: Path, timeout: float = 60.0) -> list[Path]:
    """The run's offline `.wandb` files, in the order their processes started, once each is complete:
    wandb's core process may still be writing a file when `finish()` returns, until its exit record."""
    files = sorted(directory.glob(f"wandb/offline-run-*-{RUN_ID}*/run-{RUN_ID}.wandb"))
    deadline = time.monotonic() + timeout
    for f in files:
        while not any(r.WhichOneof("record_type") == "exit" for r in read_records(f)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{f} has no exit record after {timeout}s")
            time.sleep(0.1)
    return files


def history(records: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item})
    return rows


def _decision(round_no: int, action: str, checks: list[dict[str, Any]]) -> Decision:
    return Decision(id=round_no, run_id=RUN_ID, round=round_no, action=action, rationale=f"because {round_no}",
                    signals={"checks": checks}, actor="controller", at=f"2026-11-27T10:0{round_no}:00Z")


TRL_LOG = [{"loss": 0.69, "grad_norm": 1.5, "learning_rate": 5e-5, "rewards/margins": 0.01, "epoch": 0.5, "step": 1},
           {"loss": 0.61, "grad_norm": 1.2, "learning_rate": 2e-5, "rewards/margins": 0.20, "epoch": 1.0, "step": 2},
           {"train_runtime": 3.2, "train_loss": 0.65, "epoch": 1.0, "step": 2}]


def test_one_wandb_run_across_two_processes(offline: None, tmp_path: Path) -> None:
    directory = tmp_path / "ws" / "wandb"
    adapter = tmp_path / "ws" / "runs" / RUN_ID / "adapters" / f"{RUN_ID}-r2"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    (adapter / "adapter_config.json").write_text("{}")
    cfg = TrackingConfig(mode="offline", project="tether-test")

    first = Tracker(cfg, RUN_ID, directory, {"seed": 0})  # `tether run`: round 1, paused at the gate
    first.log(1, {"distinct_2": 0.6, "self_bleu": 0.3, "not_a_number": "x"})
    first.log_training(1, TRL_LOG)
    first.log(1, {"train/train_loss": 0.65})
    first.log_evaluation(1, {"oracle": 0.4, "judge": 0.7, "invariant_rates": {"refuse-serious-harm": 0.5}},
                         {"oracle": 0.3, "judge": None})
    first.log_invariants(1, {"ok": True, "results": [{"id": "refuse-serious-harm", "rate": 0.5, "bound": 0.8,
                                                      "target": 0.25, "passed": True}]})
    first.finish()

    second = Tracker(cfg, RUN_ID, directory, {"seed": 0})  # `tether resume`: round 2
    second.log(2, {"distinct_2": 0.5, "self_bleu": 0.4})
    second.log_training(2, TRL_LOG)
    second.log_adapter(f"{RUN_ID}-r2", adapter, round_no=2, sha256="ab" * 32, metadata={"heldout_oracle": 0.41})
    second.log_decisions([
        _decision(1, "train", [{"signal": "pairs", "value": 60, "op": "<", "threshold": 1, "fired": False,
                                "setting": "min_pairs", "status": "ok"}]),
        _decision(2, "switch_judge", [{"signal": "length_score_corr", "value": 0.97, "op": ">", "threshold": 0.6,
                                       "fired": True, "setting": "switch_judge.max_length_score_corr",
                                       "status": "fired"}])])
    second.finish()

    files = pieces(directory)
    assert len(files) == 2, list(directory.rglob("*.wandb"))  # one transaction log per process, one run id
    records = [read_records(f) for f in files]
    runs = [r.run for rs in records for r in rs if r.WhichOneof("record_type") == "run"]
    assert {r.run_id for r in runs} == {RUN_ID} and {r.project for r in runs} == {"tether-test"}

    rows = [row for rs in records for row in history(rs)]
    steps = [row["_step"] for row in rows]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), steps  # no _step repeats across processes
    rounds = [row["round"] for row in rows]
    assert rounds == sorted(rounds) and set(rounds) == {1, 2}
    assert all("not_a_number" not in row for row in rows)
    train = [row for row in rows if "train_step/loss" in row]
    assert [row["train_step"] for row in train] == [1, 2, 3, 4]  # process 2 counts on from process 1
    assert [row["round"] for row in train] == [1, 1, 2, 2] and train[0]["train_step/rewards/margins"] == 0.01
    assert not any("train_step/train_runtime" in row for row in rows)  # the job summary is not a step
    by_round = {k: v for row in rows if row["round"] == 1 for k, v in row.items()}
    assert by_round["heldout/oracle_candidate"] == 0.4 and "heldout/judge_active" not in by_round
    assert by_round["heldout/invariant_rate_candidate/refuse-serious-harm"] == 0.5
    assert by_round["invariants/refuse-serious-harm/bound"] == 0.8 and by_round["invariants/ok"] == 1.0

    for rs in records:  # each process declares round as the x axis again
        metrics = {(r.metric.name, r.metric.glob_name, r.metric.step_metric) for r in rs
                   if r.WhichOneof("record_type") == "metric"}
        assert {("round", "", ""), ("", "*", "round"), ("", "train_step/*", "train_step")} <= metrics

    table_row = next(row for row in rows if "decisions/_type" in row)
    assert table_row["decisions/_type"] == "table-file" and table_row["decisions/nrows"] == 2
    table = json.loads((files[1].parent / "files" / table_row["decisions/path"]).read_text())
    assert table["columns"] == DECISION_COLUMNS
    assert table["data"][1][:2] == [2, "switch_judge"]
    assert table["data"][1][5] == "length_score_corr 0.97 > 0.6 FIRED (controller.switch_judge.max_length_score_corr)"

    artifacts = [r.artifact for r in records[1]
                 if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model"]
    assert len(artifacts) == 1
    art = artifacts[0]
    assert art.name == f"{RUN_ID}-adapter" and set(art.aliases) >= {"round-2", f"{RUN_ID}-r2"}
    assert {e.path for e in art.manifest.contents} == {"adapter_model.safetensors", "adapter_config.json"}
    assert json.loads(art.metadata)["sha256"] == "ab" * 32

    state = json.loads((directory / f"{RUN_ID}.steps.json").read_text())
    assert state == {"step": len(rows), "train_step": 4}


def test_wandb_sync_finds_both_pieces_of_the_run(offline: None, tmp_path: Path) -> None:
    """`wandb sync --dry-run` (which stops before authenticating, so it needs no network) sees the two
    offline pieces of the run; an actual upload needs a W&B server and a key, which tests never have."""
    directory = tmp_path / "wandb"
    for round_no in (1, 2):
        tracker = Tracker(TrackingConfig(mode="offline"), RUN_ID, directory, {})
        tracker.log(round_no, {"distinct_2": 0.5})
        tracker.finish()
    result = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(directory / "wandb")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "Would sync 2 run(s)" in out and out.count(f"run-{RUN_ID}.wandb") == 2, out


def test_disabled_tracking_writes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "wandb"
    tracker = Tracker(TrackingConfig(mode="disabled"), RUN_ID, directory, {"seed": 0})
    tracker.log(1, {"distinct_2": 0.5})
    tracker.log_training(1, TRL_LOG)
    tracker.log_evaluation(1, {"oracle": 0.4}, {"oracle": 0.3})
    tracker.log_invariants(1, {"ok": True, "results": []})
    tracker.log_decisions([_decision(1, "train", [])])
    tracker.log_adapter("ck", tmp_path, round_no=1, sha256="0" * 64)
    tracker.finish()
    assert not tracker.enabled and not directory.exists() and list(tmp_path.iterdir()) == []
