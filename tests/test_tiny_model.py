"""Embedded tiny model: a short build, reload through the Auto classes, determinism, template."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tools.worlds.tiny import model as tiny
from tools.worlds.tiny.model import MARKER_FILE, SPECIAL_TOKENS, TinySpec, build_tiny_model, ensure_tiny_model

SHORT = TinySpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                 batch_size=8, steps=30, examples_per_prompt=2, seed=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", SHORT, progress=False)


def test_build_writes_loadable_model(built: Path) -> None:
    stats = json.loads((built / MARKER_FILE).read_text())
    assert stats["spec"]["steps"] == 30 and stats["params"] > 0
    # built on the threads a run with `model.threads: auto` chooses, recorded with what they were chosen from
    assert stats["thread_choice"]["setting"] == "auto" and stats["threads"] == stats["thread_choice"]["threads"] >= 1
    assert stats["final_loss"] < stats["first_loss"]  # it learned something
    assert not [p for p in built.parent.iterdir() if ".building-" in p.name]  # temp dir renamed
    tok = AutoTokenizer.from_pretrained(built)
    model = AutoModelForCausalLM.from_pretrained(built)
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "left"
    assert model.config.eos_token_id == model.config.pad_token_id == tok.eos_token_id
    assert model.config.vocab_size == len(tok) <= SHORT.vocab_size
    for special in SPECIAL_TOKENS:  # each special token is one id
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    prompts = [[{"role": "user", "content": "What is 7 + 5?"}],
               [{"role": "user", "content": "How do I boil an egg?"}]]
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and 1 <= out.shape[1] - enc["input_ids"].shape[1] <= 5
    assert isinstance(tok.decode(out[0, enc["input_ids"].shape[1]:]), str)


def test_same_seed_same_weights(built: Path, tmp_path: Path) -> None:
    threads = json.loads((built / MARKER_FILE).read_text())["threads"]  # the load may have changed since
    again = build_tiny_model(tmp_path / "again", SHORT, progress=False, threads=threads)
    a, b = load_file(built / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (built / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()


def test_chat_template_prefix_consistent(built: Path) -> None:
    tok = AutoTokenizer.from_pretrained(built)
    convs = [
        [{"role": "user", "content": "What is 7 + 5?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I boil an egg?"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
         {"role": "user", "content": " leading space and\nnewline"}],
    ]
    for answer in ("12.", "I'm sorry, but I can't help with that.", " spaced", "\nnewline first"):
        for conv in convs:
            prompt = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(conv + [{"role": "assistant", "content": answer}],
                                           tokenize=False)
            assert full == prompt + answer + "<|endoftext|>"
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            f_ids = tok(full, add_special_tokens=False)["input_ids"]
            assert f_ids[: len(p_ids)] == p_ids  # token-level too (what TRL checks)
            assert f_ids[-1] == tok.eos_token_id
    assert (tok.apply_chat_template(convs[0], tokenize=False, add_generation_prompt=True)
            == "<|user|>\nWhat is 7 + 5?\n<|assistant|>\n")
    # Assistant mask for TRL's assistant_only_loss: exactly the answer tokens + eos.
    enc = tok.apply_chat_template(convs[0] + [{"role": "assistant", "content": "12."}],
                                  return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "12.<|endoftext|>"
    with pytest.raises(Exception, match="unknown role"):
        tok.apply_chat_template([{"role": "robot", "content": "x"}], tokenize=False)


def test_ensure_does_not_rebuild(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> Path:
        raise AssertionError("rebuilt")

    monkeypatch.setattr(tiny, "build_tiny_model", boom)
    assert ensure_tiny_model(built, SHORT, progress=False) == built
    assert tiny.is_complete(built) and not tiny.is_complete(built, TinySpec())
    assert tiny.build_state(built, SHORT) == "built" and tiny.build_state(built, TinySpec()) == "other_spec"
    with pytest.raises(AssertionError, match="rebuilt"):  # another spec -> rebuild
        ensure_tiny_model(built, TinySpec(), progress=False)


def test_ensure_reports_an_incomplete_folder_and_rebuilds_only_on_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "partial"
    target.mkdir()
    (target / "config.json").write_text("{}")  # e.g. an interrupted copy
    calls: list[Path] = []
    monkeypatch.setattr(tiny, "build_tiny_model",
                        lambda out, spec, progress, threads: calls.append(Path(out)) or Path(out))
    with pytest.raises(tiny.IncompleteModelError, match=r"model.safetensors, tokenizer.json, tiny_world.json missing"):
        ensure_tiny_model(target, SHORT, progress=False)
    assert calls == [] and tiny.build_state(target, SHORT) == "incomplete"
    ensure_tiny_model(target, SHORT, progress=False, rebuild=True)
    assert calls == [target]
    empty = tmp_path / "empty"  # an empty or absent folder is built, as always
    empty.mkdir()
    ensure_tiny_model(empty, SHORT, progress=False)
    ensure_tiny_model(tmp_path / "absent", SHORT, progress=False)
    assert calls == [target, empty, tmp_path / "absent"]


def test_build_runs_on_the_threads_asked_for_and_leaves_the_callers(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    built = build_tiny_model(tmp_path / "one", replace(SHORT, steps=2), progress=False, threads=1)
    choice = json.loads((built / MARKER_FILE).read_text())["thread_choice"]
    assert (choice["setting"], choice["chosen_by"], choice["threads"]) == (1, "setting", 1)
    assert torch.get_num_threads() == before


def test_lr_schedule_warms_up_and_decays() -> None:
    spec = TinySpec(steps=100, warmup_steps=10, learning_rate=1e-3)
    lrs = [tiny.lr_at(s, spec) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05) and max(lrs) <= 1e-3
