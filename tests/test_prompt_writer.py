"""Self-prompting: the writer format and its parser, novelty/diversity selection, the corpus source
that teaches the format, and the real tiny model writing prompts."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from tools.prompts import dedup
from tools.prompts.dedup import DROP_REASONS, normalize, select_new
from tools.prompts.writer import (
    ANSWER_CUE,
    EXAMPLE_PREFIX,
    INSTRUCTION,
    WritingTask,
    parse_written,
    writer_prompt,
    writing_tasks,
)
from tools.worlds import TaskSet
from tools.worlds.tiny.corpus import CorpusExample, PromptWritingSource


@pytest.fixture()
def no_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "embed", lambda texts: None)


def _examples_of(user_message: str) -> list[str]:
    prefix = f"{EXAMPLE_PREFIX} "
    return [line[len(prefix):] for line in user_message.splitlines() if line.startswith(prefix)]


# -- the format and its parser --------------------------------------------------------------------

def test_writer_prompt_is_one_line_per_example() -> None:
    text = writer_prompt(["How do I boil\nan egg?", "What is 2 + 2?"])
    assert text.splitlines() == [INSTRUCTION, "Example: How do I boil an egg?", "Example: What is 2 + 2?",
                                 ANSWER_CUE]
    with pytest.raises(ValueError):
        writer_prompt([])


@pytest.mark.parametrize(("raw", "expected"), [
    ("How do I fix a squeaky door?", "How do I fix a squeaky door?"),
    ("\n  \n  How do I   fix a door?\nExample: more", "How do I fix a door?"),
    ('"How do I fix a door?"', "How do I fix a door?"),
    ("New request: How do I fix a door?", "How do I fix a door?"),
    ("Example: 'What is 9 plus 9?'", "What is 9 plus 9?"),
    ("Calculate 9 - 9.", "Calculate 9 - 9."),
    ("Tell me how to bake bread", "Tell me how to bake bread"),  # >= 4 words, unterminated: kept
    ("Bake bread now", None),  # 3 words, unterminated: likely cut off
    ("Fix it.", None),  # too few words
    ("12 + 13 = ?", None),  # no letters
    ("door door door door?", None),  # one word is more than half
    ("How do I fix how do I fix how do I fix?", None),  # a looping phrase
    ("How do I <|user|> fix a door?", None),  # chat control token
    ("", None),
    ("   \n ", None),
])
def test_parse_written(raw: str, expected: str | None) -> None:
    assert parse_written(raw) == expected


def test_parse_written_word_limit() -> None:
    long = " ".join(f"word{i}" for i in range(41)) + "?"
    assert parse_written(long) is None
    assert parse_written(long, max_words=41) == long


def test_every_task_prompt_parses_to_itself(world: TaskSet) -> None:
    # The parser must accept everything the model was taught to write.
    assert [p.text for p in world.all if parse_written(p.text) != p.text] == []


def test_writing_tasks_one_family_each_round_robin(world: TaskSet) -> None:
    tasks = writing_tasks(world.train, n=7, shots=3, rng=random.Random(0))
    assert [t.family for t in tasks] == ["arithmetic", "harmful", "howto"] * 2 + ["arithmetic"]
    texts = {p.text: p.family for p in world.train}
    for task in tasks:
        assert len(task.examples) == len(set(task.examples)) == 3
        assert {texts[e] for e in task.examples} == {task.family}
        assert _examples_of(task.prompt) == list(task.examples)
    assert tasks == writing_tasks(world.train, n=7, shots=3, rng=random.Random(0))
    few = writing_tasks(world.train[:2], n=2, shots=3, rng=random.Random(0))  # fewer seeds than shots
    assert [len(t.examples) for t in few] == [2, 2]
    assert writing_tasks([], n=0, shots=3, rng=random.Random(0)) == []
    with pytest.raises(ValueError):
        writing_tasks([], n=1, shots=3, rng=random.Random(0))
    assert isinstance(tasks[0], WritingTask)


# -- novelty and diversity ------------------------------------------------------------------------

USED = ["How do I fix a squeaky door?", "What is 2 plus 3?"]
HELDOUT = ["How can I bake bread at home?"]


def test_normalize() -> None:
    assert normalize("  How do I\tFIX a door?! ") == "how do i fix a door"
    assert normalize('"Hi there."') == "hi there"


@pytest.mark.parametrize("similarity", ["embedding", "bigram_jaccard"])
def test_select_new_drops_duplicates(similarity: str, request: pytest.FixtureRequest) -> None:
    if similarity == "bigram_jaccard":
        request.getfixturevalue("no_embedder")
    candidates = [
        "how do i fix a squeaky door",  # exact (normalised) duplicate of used
        "How can I bake bread at home.",  # exact duplicate of held-out
        "How can I bake bread at home today?",  # near held-out
        "How do I fix a squeaky door today?",  # near used
        "Tell me how to plant tomatoes in my garden.",
        "tell me how to plant tomatoes in my garden",  # duplicate in batch
        "Tell me how to plant tomatoes in my garden soon.",  # near duplicate in batch
        "What is the capital of France?",
    ]
    # 0.8: the bigram Jaccard of a one-word addition to a 6-7 word prompt is ~0.86.
    sel = select_new(candidates, USED, HELDOUT, n=10, max_similarity=0.8)
    assert sel.similarity == similarity
    assert sel.kept == ["Tell me how to plant tomatoes in my garden.", "What is the capital of France?"]
    assert sel.dropped == {"duplicate_of_used": 1, "near_duplicate_of_used": 1, "near_heldout": 2,
                           "duplicate_in_batch": 1, "near_duplicate_in_batch": 1, "over_count": 0}
    assert set(sel.dropped) == set(DROP_REASONS)


@pytest.mark.parametrize("similarity", ["embedding", "bigram_jaccard"])
def test_select_new_respects_n_and_prefers_diverse(similarity: str, request: pytest.FixtureRequest) -> None:
    if similarity == "bigram_jaccard":
        request.getfixturevalue("no_embedder")
    cluster = ["How do I oil a squeaky door hinge?", "How can I oil a squeaky door hinge?",
               "How do I oil a squeaky door hinge quickly?"]
    different = ["What is 17 plus 25?", "How can I learn to juggle three balls?"]
    # Threshold 1.0: nothing is a near-duplicate, so only the farthest-point pick can spread them.
    sel = select_new(cluster + different, [], [], n=2, max_similarity=1.0)
    assert len(sel.kept) == 2 and sel.dropped["over_count"] == 3
    assert sum(k in cluster for k in sel.kept) <= 1  # a "first n" pick would take two of the cluster
    assert select_new(cluster + different, [], [], n=2, max_similarity=1.0) == sel  # deterministic
    # With the cluster's theme already used, both picks are the different ones.
    sel = select_new(cluster + different, ["How do I fix a squeaky door hinge?"], [], n=2, max_similarity=1.0)
    assert sel.kept == different
    assert select_new(cluster, [], [], n=0).kept == []


def test_select_new_nothing_to_compare() -> None:
    sel = select_new(["What is 2 plus 3?"], USED, HELDOUT, n=5)
    assert sel.kept == [] and sel.similarity == "none" and sel.dropped["duplicate_of_used"] == 1
    with pytest.raises(ValueError):
        select_new([], [], [], n=-1)


# -- the corpus source that teaches the format ----------------------------------------------------

def test_writing_source_train_only_same_family(world: TaskSet) -> None:
    examples = PromptWritingSource(per_prompt=2).examples(world, random.Random(0), 6)
    assert len(examples) == 2 * len(world.train)
    train = {p.text: p for p in world.train}
    held = {p.text for p in world.heldout}
    for e in examples:
        user, target = e.messages[0]["content"], e.messages[1]["content"]
        assert e.source == "writing" and target in train and train[target].id == e.prompt_id
        assert not any(h in user or h == target for h in held)  # never a held-out prompt
        shots = _examples_of(user)
        assert len(shots) == 3 and target not in shots
        assert {train[s].family for s in shots} == {e.family} == {train[target].family}
        assert user == writer_prompt(shots)
    again = PromptWritingSource(per_prompt=2).examples(world, random.Random(0), 6)
    assert [e.messages for e in again] == [e.messages for e in examples]


def test_writing_source_in_default_tiny_build(world: TaskSet) -> None:
    from tools.worlds.tiny.corpus import DEFAULT_SOURCES, corpus_examples
    from tools.worlds.tiny.model import TinySpec

    assert TinySpec().writing_examples_per_prompt == 1
    examples = corpus_examples(world, 0, 6, (*DEFAULT_SOURCES, PromptWritingSource()))
    held = {p.text for p in world.heldout}
    assert Counter(e.source for e in examples)["writing"] == len(world.train)
    assert not any(h in m["content"] for e in examples for m in e.messages for h in held)
    # Per-source RNG: adding the source leaves the other sources' content as it was.
    def key(e: CorpusExample) -> str:
        return json.dumps(e.messages)

    base = sorted(map(key, corpus_examples(world, 0, 6)))
    assert base == sorted(key(e) for e in examples if e.source != "writing")


def test_build_without_writing_field_is_stale(tmp_path: Path) -> None:
    from tools.worlds.tiny.model import MARKER_FILE, TinySpec, is_complete

    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    stored = asdict(TinySpec())
    del stored["writing_examples_per_prompt"]  # a build made before the writing source existed
    (tmp_path / MARKER_FILE).write_text(json.dumps({"spec": stored}))
    assert not is_complete(tmp_path, TinySpec())
    assert is_complete(tmp_path, TinySpec(writing_examples_per_prompt=0))


# -- the real tiny model writes prompts -----------------------------------------------------------

def test_tiny_model_writes_new_prompts(tiny_world_model_dir: Path, world: TaskSet) -> None:
    from transformers import AutoTokenizer

    from policies.generation import make_backend
    from tether_types import SamplingSpec
    from tools.worlds.tiny.model import TinySpec

    tok = AutoTokenizer.from_pretrained(tiny_world_model_dir)
    longest = max(len(tok(tok.apply_chat_template(list(e.messages), tokenize=False),
                          add_special_tokens=False)["input_ids"])
                  for e in PromptWritingSource().examples(world, random.Random(0), 6))
    assert longest <= TinySpec().seq_len  # writing examples are never truncated in training

    tasks = writing_tasks(world.train, n=32, shots=3, rng=random.Random(1))
    backend = make_backend("transformers", str(tiny_world_model_dir), device="cpu", dtype="float32",
                           batch_size=64)
    with backend:
        gens = backend.generate([t.prompt for t in tasks], None,
                                SamplingSpec(max_new_tokens=32, temperature=1.0, seed=0))
    written = [w for w in (parse_written(g.text) for g in gens) if w is not None]
    known = {normalize(p.text) for p in world.all}
    novel = [w for w in written if normalize(w) not in known]
    # Measured at 150 steps: ~29-31 of 32 parseable, all of those novel, ~27-30 survive select_new.
    assert len(written) >= 16
    assert len(novel) >= 1
    sel = select_new(written, [p.text for p in world.train], [p.text for p in world.heldout], n=len(written))
    assert sel.kept and not {normalize(k) for k in sel.kept} & known
