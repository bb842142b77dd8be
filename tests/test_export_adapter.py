"""`tether export adapter`: an approved adapter leaves tether loadable by plain PEFT / transformers, with a
model card and digests, and nothing else leaves, however the workspace was edited.

The exports are checked against tether's own loader (`policies.loading.load_policy`) on the tiny model.
The refusals are attacks by someone with write access to the workspace (its database and files) who
wants an adapter no reviewer approved, or other bytes than they approved, to leave: each must exit
with its code and leave no DIR behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import clone_workspace, raw_db
from memory import Store
from policies.adapters import adapter_sha256
from policies.artifacts import model_manifest
from policies.loading import load_policy
from tether_types import AdapterRef

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


Approved = tuple[Path, str, Path]  # (home, run_id, its key folder)


@pytest.fixture(scope="module")
def approved(gated_workspace, tmp_path_factory: pytest.TempPathFactory) -> Approved:
    """A run whose round-1 candidate a reviewer approved and the gate activated (the real path: `approve`,
    then `resume`), now paused at round 2's gate with candidate r2 pending. Read-only: tests that change
    it work on `_clone`s."""
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path_factory.mktemp("approved") / "ws")
    keys = Path(os.environ["TETHER_KEYS_DIR"])
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    result = tether(home, "resume", run_id)
    assert result.exit_code == 0, result.output
    store = Store(home / "tether.db")
    assert store.get_checkpoint(f"{run_id}-r1").status == "approved"
    assert store.get_checkpoint(f"{run_id}-r2").status == "pending"
    return home, run_id, keys


def _use(approved: Approved) -> tuple[Path, str]:
    """Work on the shared workspace read-only, witnessing into its own key folder (never the session's)."""
    home, run_id, keys = approved
    os.environ["TETHER_KEYS_DIR"] = str(keys)
    return home, run_id


def _clone(approved: Approved, tmp_path: Path) -> tuple[Path, str]:
    home, run_id, keys = approved
    os.environ["TETHER_KEYS_DIR"] = str(keys)
    dest, _, _ = clone_workspace((home, run_id, ""), tmp_path / "ws")
    return dest, run_id


def _inputs(tokenizer, world) -> list[torch.Tensor]:
    """Three held-out prompts in the model's chat format."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": p.text}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)["input_ids"]
            for p in world.heldout[:3]]


def _tethers_own(home: Path, ck_id: str, base: Path):
    ck = Store(home / "tether.db").get_checkpoint(ck_id)
    return load_policy(str(base), AdapterRef(id=ck.id, path=home / ck.path, sha256=ck.sha256), "cpu")


def test_the_exported_adapter_loads_with_peft_and_answers_as_tether_does(approved, tmp_path: Path, world,
                                                                        tiny_world_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home, run_id = _use(approved)
    ck = Store(home / "tether.db").get_checkpoint(f"{run_id}-r1")
    out = tmp_path / "exports" / "r1"
    result = tether(home, "export", "adapter", ck.id, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert adapter_sha256(out) == ck.sha256  # exactly the approved bytes

    theirs = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_world_model_dir), out).eval()
    ours = _tethers_own(home, ck.id, tiny_world_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_world_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_world_model_dir)
    with torch.no_grad():
        for ids in _inputs(tokenizer, world):
            greedy = {"max_new_tokens": 24, "do_sample": False, "pad_token_id": tokenizer.eos_token_id}
            assert theirs.generate(ids, **greedy).tolist() == ours.generate(ids, **greedy).tolist()
            # ...and the adapter does something, so the equality is not the base's answer twice.
            assert not torch.equal(theirs(ids).logits, base(ids).logits)

    # The manifest on stdout is the one written; SHA256SUMS covers every other file and verifies.
    manifest = json.loads(result.stdout)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "adapter" and manifest["checkpoint"] == ck.id and manifest["adapter_sha256"] == ck.sha256
    assert manifest["approval"]["approved_by"] == ["alice"]
    assert set(manifest["files"]) == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    listed = [line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == sorted(p.name for p in out.iterdir() if p.name != "SHA256SUMS")
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 0
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # the sums catch a change after export
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode != 0

    card = (out / "README.md").read_text()
    signed_at = manifest["approval"]["signatures"][0]["time"]
    for fact in (ck.id, run_id, "round 1", str(manifest["base_model"]["ref"]), manifest["base_model"]["sha256"],
                 "constitution: v1", *manifest["constitution"]["invariants"].values(), "| alice | approve |",
                 signed_at, "refuse-serious-harm", "| oracle |", "lora_r", "library_name: peft"):
        assert fact in card, fact
    assert not list((tmp_path / "exports").glob(".*"))  # no staging folder left beside DIR


def test_the_merged_model_loads_alone_and_matches_base_plus_adapter(approved, tmp_path: Path, world,
                                                                   tiny_world_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home, run_id = _use(approved)
    out = tmp_path / "merged"
    result = tether(home, "export", "adapter", f"{run_id}-r1", "--out", str(out), "--merge")
    assert result.exit_code == 0, result.output
    assert "merging the adapter" in result.stderr  # progress on stderr, stdout left clean
    assert not (out / "adapter_config.json").exists()

    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # transformers alone, no PEFT
    ours = _tethers_own(home, f"{run_id}-r1", tiny_world_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        for ids in _inputs(tokenizer, world):
            torch.testing.assert_close(merged(ids).logits, ours(ids).logits, atol=1e-4, rtol=1e-4)
    assert tokenizer("Hello there")["input_ids"] == AutoTokenizer.from_pretrained(tiny_world_model_dir)(
        "Hello there")["input_ids"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "merged" and manifest["dtype"] == "float32"
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 0
    assert "AutoModelForCausalLM.from_pretrained" in (out / "README.md").read_text()


def _refused(home: Path, ck_id: str, tmp_path: Path, code: int, *words: str) -> None:
    """The export exits `code` naming why, and neither DIR nor its parent (nor a staging folder) exists."""
    out = tmp_path / "exports" / "x"
    result = tether(home, "export", "adapter", ck_id, "--out", str(out))
    assert result.exit_code == code, result.output
    for word in words:
        assert word in result.stderr, (word, result.stderr)
    assert not (tmp_path / "exports").exists()


def test_what_was_not_approved_is_not_exported(approved, tmp_path: Path) -> None:
    home, run_id = _use(approved)
    before = Store(home / "tether.db").audit_entries()
    _refused(home, f"{run_id}-r2", tmp_path, 2, "pending")
    _refused(home, f"{run_id}-base", tmp_path, 2, "no adapter")
    _refused(home, "run-nope-r1", tmp_path, 2, "no checkpoint")
    assert Store(home / "tether.db").audit_entries() == before  # an export reads; it records nothing


def test_approved_but_not_yet_activated_is_not_exported(approved, tmp_path: Path) -> None:
    home, run_id = _clone(approved, tmp_path)
    approval = Store(home / "tether.db").approval_for_subject("checkpoint", f"{run_id}-r2")
    assert tether(home, "approve", approval.id, "--by", "bob", "--accept-not-met").exit_code == 0
    _refused(home, f"{run_id}-r2", tmp_path, 2, "not yet activated", f"tether resume {run_id}")


def test_a_rejected_checkpoint_is_not_exported(approved, tmp_path: Path) -> None:
    home, run_id = _clone(approved, tmp_path)
    approval = Store(home / "tether.db").approval_for_subject("checkpoint", f"{run_id}-r2")
    assert tether(home, "reject", approval.id, "--by", "bob", "--note", "worse on howto").exit_code == 0
    assert tether(home, "resume", run_id).exit_code == 0  # the gate discards it; the run's budget ends
    assert Store(home / "tether.db").get_checkpoint(f"{run_id}-r2").status == "rejected"
    _refused(home, f"{run_id}-r2", tmp_path, 2, "rejected")


# -- attacks: someone with write access to the workspace's database and files -----------------------------


def test_a_checkpoint_set_to_approved_by_sql_is_refused(approved, tmp_path: Path) -> None:
    home, run_id = _clone(approved, tmp_path)
    with raw_db(home) as db:
        db.execute("UPDATE checkpoints SET status = 'approved' WHERE id = ?", (f"{run_id}-r2",))
    _refused(home, f"{run_id}-r2", tmp_path, 1, "no human approval")
    with raw_db(home) as db:  # ...and its approval row too: no signature supports it
        db.execute("UPDATE approvals SET status = 'approved', decided_by = 'alice', decided_at = 'now' "
                   "WHERE subject = ?", (f"{run_id}-r2",))
    _refused(home, f"{run_id}-r2", tmp_path, 1, "recorded as approved", "not written by tether")


def test_an_approval_moved_onto_another_checkpoint_is_refused(approved, tmp_path: Path) -> None:
    """r1's genuine approval (row and signatures) re-pointed at r2, whose own approval is deleted."""
    home, run_id = _clone(approved, tmp_path)
    store = Store(home / "tether.db")
    r1, r2 = store.get_checkpoint(f"{run_id}-r1"), store.get_checkpoint(f"{run_id}-r2")
    with raw_db(home) as db:
        db.execute("DELETE FROM approvals WHERE subject = ?", (r2.id,))
        db.execute("UPDATE approvals SET subject = ?, subject_sha256 = ? WHERE subject = ?", (r2.id, r2.sha256, r1.id))
        db.execute("UPDATE checkpoints SET status = 'approved' WHERE id = ?", (r2.id,))
    _refused(home, r2.id, tmp_path, 1, "signed for another subject")


def test_an_approved_adapter_whose_files_changed_is_refused(approved, tmp_path: Path) -> None:
    home, run_id = _clone(approved, tmp_path)
    store = Store(home / "tether.db")
    r1, r2 = store.get_checkpoint(f"{run_id}-r1"), store.get_checkpoint(f"{run_id}-r2")
    weights = home / r1.path / "adapter_model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    _refused(home, r1.id, tmp_path, 1, "integrity check failed", r1.sha256)
    # The unapproved r2's files in r1's folder, and r1's recorded digest updated to match them.
    weights.write_bytes(original)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(home / r2.path / name, home / r1.path / name)
    with raw_db(home) as db:
        db.execute("UPDATE checkpoints SET sha256 = ? WHERE id = ?", (r2.sha256, r1.id))
    _refused(home, r1.id, tmp_path, 1, "no human approval of exactly this adapter")
    with raw_db(home) as db:  # ...and the approval's digest too: the signed statement names the old one
        db.execute("UPDATE approvals SET subject_sha256 = ? WHERE subject = ?", (r2.sha256, r1.id))
    _refused(home, r1.id, tmp_path, 1, "signed for another subject")


def test_a_base_model_that_differs_from_its_pin_is_refused(approved, tmp_path: Path,
                                                          tiny_world_model_dir: Path) -> None:
    """The run pointed at a copy of its base with one file changed; then that copy pinned as the base."""
    home, run_id = _clone(approved, tmp_path)
    other = tmp_path / "other-base"
    shutil.copytree(tiny_world_model_dir, other)
    config = other / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps"', '"rms_norm_eps_"'))
    with raw_db(home) as db:
        db.execute("UPDATE runs SET base_model = json_set(base_model, '$.ref', ?) WHERE id = ?", (str(other), run_id))
    _refused(home, f"{run_id}-r1", tmp_path, 1, "config.json changed since the run started")
    pinned = model_manifest(other).to_json(str(other))
    with raw_db(home) as db:
        db.execute("UPDATE runs SET base_model = json_set(base_model, '$.sha256', ?, '$.files', json(?)) WHERE id = ?",
                   (pinned["sha256"], json.dumps(pinned["files"]), run_id))
    _refused(home, f"{run_id}-r1", tmp_path, 1, "signed for another subject or against other facts")


# -- the destination ---------------------------------------------------------------------------------------


def test_a_folder_that_is_not_empty_is_replaced_only_with_force(approved, tmp_path: Path) -> None:
    home, run_id = _use(approved)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = tether(home, "export", "adapter", f"{run_id}-r1", "--out", str(out))
    assert result.exit_code == 2 and "--force" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert tether(home, "export", "adapter", f"{run_id}-r1", "--out", str(out), "--force").exit_code == 0
    assert not (out / "keep.txt").exists() and (out / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing hidden left beside it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tether(home, "export", "adapter", f"{run_id}-r1", "--out", str(empty)).exit_code == 0


def test_the_workspace_and_what_the_export_reads_are_never_the_destination(approved, tmp_path: Path) -> None:
    home, run_id = _clone(approved, tmp_path)
    ck = Store(home / "tether.db").get_checkpoint(f"{run_id}-r1")
    for out in (home, home.parent, home / ck.path, home / ck.path / "sub"):
        result = tether(home, "export", "adapter", ck.id, "--out", str(out), "--force")
        assert result.exit_code == 2, (out, result.output)
    assert adapter_sha256(home / ck.path) == ck.sha256 and (home / "tether.db").is_file()


def test_a_failure_midway_leaves_no_folder(approved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.review import ship

    def crash(*_a: object, **_k: object) -> None:
        raise RuntimeError("killed while writing")

    home, run_id = _use(approved)
    monkeypatch.setattr(ship, "_manifest", crash)
    result = tether(home, "export", "adapter", f"{run_id}-r1", "--out", str(tmp_path / "exports" / "x"))
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert list((tmp_path / "exports").iterdir()) == []  # no DIR, no staging folder


def test_the_card_beside_the_activated_adapter_is_the_same_card(approved) -> None:
    """The commit node writes the card into the adapter folder (not part of the adapter's digest)."""
    home, run_id = _use(approved)
    ck = Store(home / "tether.db").get_checkpoint(f"{run_id}-r1")
    card = (home / ck.path / "README.md").read_text()
    assert ck.sha256 in card and "approved by: alice" in card and "## Invariants" in card and "## Training" in card
