"""The judge pool: parsing, both-orders pairwise, every kind on tiny models, jury, length control."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from conftest import serve_chat
from guardrails.constitution import default_constitution_yaml, parse_constitution
from policies.generation import TransformersBackend
from tether_types import SamplingSpec
from tools.judges import (
    JUDGES,
    BackendPolicy,
    JudgeItem,
    LLMJudge,
    PairItem,
    PairVerdict,
    Verdict,
    compare,
    parse_score,
    parse_winner,
    pointwise_prompt,
    preference_summary,
)
from tools.registry import PluginSettingsError

CONSTITUTION = parse_constitution(default_constitution_yaml(), "default")
ITEMS = [
    JudgeItem("What is 2 + 2?", "It's 4."),
    JudgeItem("How can I steal a car?", "I can't help with that."),
    JudgeItem("How do I boil an egg?", "Great question! Boil it for eight minutes. I hope this helps!"),
]


# -- parsing: failures never become scores or preferences ---------------------------------------

@pytest.mark.parametrize("raw", [
    "", "   ", "7", "0", "-1", "42", "Score: 6", "Score: 0", "Score: 3. On reflection, Score: 5",
    "Score: 4.5", "Score: 4/10", "I'd give it a 4", "four", "Rating: 4", "Score:", "Score: N",
    "I can't judge that.", "I'm sorry, but I cannot evaluate this. Score: 3",
    "As an AI, I cannot rate responses.",
])
def test_malformed_scores_are_invalid_and_keep_raw(raw: str) -> None:
    v = parse_score(raw)
    assert not v.valid and v.score is None and v.raw == raw and v.details["invalid"]


@pytest.mark.parametrize(("raw", "score"), [
    ("Score: 5", 1.0), ("Score: 1", 0.0), ("score: 3", 0.5), ("The reply is fine.\nScore: 4", 0.75),
    ("**Score:** 2", 0.25), ("Score: 4/5", 0.75), ("4", 0.75), ("Score: 3 ... so, Score: 3", 0.5),
])
def test_well_formed_scores_are_normalised(raw: str, score: float) -> None:
    v = parse_score(raw)
    assert v.valid and v.score == pytest.approx(score)


@pytest.mark.parametrize("raw", [
    "", "Winner: A. No wait, Winner: B", "Response A is better", "Winner: C", "Both are fine",
    "I cannot compare these.", "Score: 4",
])
def test_malformed_winners_are_invalid(raw: str) -> None:
    winner, reason = parse_winner(raw)
    assert winner is None and reason


@pytest.mark.parametrize(("raw", "winner"), [
    ("Winner: A", "a"), ("winner: b", "b"), ("Winner: tie", "tie"), ("B", "b"),
    ("A is shorter.\nWinner: Response A", "a"),
])
def test_well_formed_winners(raw: str, winner: str) -> None:
    assert parse_winner(raw) == (winner, None)


# -- pairwise: both orders, position bias caught --------------------------------------------------

def _winner_ask(choose: Callable[[str, str], str]) -> Callable[[list[str]], list[str]]:
    """A fake LLM answering pairwise prompts via `choose(reply_a, reply_b)`."""
    def ask(prompts: list[str]) -> list[str]:
        out = []
        for p in prompts:
            a = p.split("\nReply A: ")[1].split("\nReply B: ")[0]
            b = p.split("\nReply B: ")[1]
            out.append(choose(a, b))
        return out
    return ask


def test_consistent_judge_flips_with_the_order() -> None:
    judge = LLMJudge(_winner_ask(lambda a, b: "Winner: A" if len(a) < len(b) else "Winner: B"),
                     "rubric", "prompt")
    item = PairItem("q", "short", "much longer reply")
    [v], [w] = judge.compare([item]), judge.compare([item.swapped()])
    assert (v.winner, w.winner) == ("a", "b")
    assert v.position_consistent and w.position_consistent
    assert v.raw == ("Winner: A", "Winner: B")


def test_order_biased_judge_ends_as_inconsistent_tie() -> None:
    judge = LLMJudge(lambda prompts: ["Winner: A"] * len(prompts), "rubric", "prompt")
    verdicts = judge.compare([PairItem("q", "x", "y"), PairItem("q", "y", "x")])
    assert all(v.winner == "tie" and not v.position_consistent for v in verdicts)
    assert preference_summary(verdicts)["position_inconsistent"] == 1.0


def test_invalid_in_either_order_is_no_preference() -> None:
    answers = iter(["Winner: A", "no idea"])
    judge = LLMJudge(lambda prompts: [next(answers) for _ in prompts], "rubric", "prompt")
    [v] = judge.compare([PairItem("q", "x", "y")])
    assert v.winner is None and not v.valid and "b-first" in v.details["invalid"]


def test_exceptions_and_timeouts_become_invalid_verdicts() -> None:
    def boom(prompts: list[str]) -> list[str]:
        raise TimeoutError("judge took too long")

    judge = LLMJudge(boom, "rubric", "prompt")
    assert all(not v.valid and "TimeoutError" in v.details["invalid"] for v in judge.score(ITEMS))
    assert all(v.winner is None for v in judge.compare([PairItem("q", "x", "y")]))


def test_pointwise_judges_get_compare_for_free() -> None:
    rules = JUDGES.build("rules", {}, constitution=CONSTITUTION).plugin
    good, refusal = "Boil it for eight minutes.", "I'm sorry, but I can't help with that."
    [v] = compare(rules, [PairItem("How do I boil an egg?", good, refusal)])
    assert v.winner == "a" and v.position_consistent
    [w] = rules.compare([PairItem("How do I boil an egg?", refusal, good)])
    assert w.winner == "b"


# -- every kind on a tiny model -------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_backend(tiny_random_model_dir: Path) -> Iterator[TransformersBackend]:
    backend = TransformersBackend(str(tiny_random_model_dir), device="cpu")
    yield backend
    backend.close()


def _assert_verdicts(verdicts: Sequence[Verdict], n: int) -> None:
    assert len(verdicts) == n
    for v in verdicts:
        assert v.valid == (v.score is not None)
        assert v.score is None or 0.0 <= v.score <= 1.0
        assert v.valid or v.details["invalid"]


def test_self_judge_generates_through_the_policy(random_backend: TransformersBackend) -> None:
    policy = BackendPolicy(random_backend)
    built = JUDGES.build("self", {"max_new_tokens": 6}, policy=policy, constitution=CONSTITUTION)
    verdicts = built.plugin.score(ITEMS)
    _assert_verdicts(verdicts, len(ITEMS))
    spec = SamplingSpec(max_new_tokens=6, do_sample=False)
    expected = policy.generate([pointwise_prompt(it.prompt, it.response) for it in ITEMS], spec)
    assert [v.raw for v in verdicts] == expected  # the raw judgment is what the policy said
    assert len(built.plugin.compare([PairItem("q", "a", "b")])) == 1
    with pytest.raises(PluginSettingsError, match="policy"):
        JUDGES.build("self", {})
    constitutional = JUDGES.build("self", {"rubric": "constitution"}, policy=policy,
                                  constitution=CONSTITUTION).plugin
    assert "Never insult" in constitutional.rubric


def test_hf_judge_loads_lazily_and_judges(tiny_random_model_dir: Path) -> None:
    built = JUDGES.build("hf", {"model": str(tiny_random_model_dir), "max_new_tokens": 6,
                                "device": "cpu"})
    assert built.plugin.handle._policy is None  # nothing loaded until the first judgment
    _assert_verdicts(built.plugin.score(ITEMS), len(ITEMS))
    [pv] = built.plugin.compare([PairItem("q", "a", "b")])
    assert isinstance(pv, PairVerdict) and len(pv.raw) == 2
    built.plugin.close()


def test_length_biased_judge_prefers_longer() -> None:
    judge = JUDGES.build("length_biased", {"scale": 10}).plugin
    short, long = judge.score([JudgeItem("q", "No."), JudgeItem("q", "word " * 30)])
    assert short.score < long.score
    [v] = judge.compare([PairItem("q", "Paris.", "Stupid question, but the answer is Paris.")])
    assert v.winner == "b" and v.position_consistent


def test_jury_of_rules_and_length_biased_records_its_members() -> None:
    settings = {"judges": [{"name": "rules"}, {"name": "length_biased", "settings": {"scale": 5}}],
                "weights": [3, 1], "aggregate": "mean"}
    built = JUDGES.build("jury", settings, constitution=CONSTITUTION)
    assert built.spec() == {"name": "jury", "settings": settings}
    assert [m.spec() for m in built.plugin.members] == [
        {"name": "rules", "settings": {}}, {"name": "length_biased", "settings": {"scale": 5}}]
    _assert_verdicts(built.plugin.score(ITEMS), len(ITEMS))
    assert built.plugin.compare([PairItem("How do I boil an egg?", "Boil it.", "Boil it, idiot.")])[0].winner == "a"


def test_meta_judge_prefers_between_judgments(tiny_random_model_dir: Path) -> None:
    hf = {"name": "hf", "settings": {"model": str(tiny_random_model_dir), "max_new_tokens": 4}}
    built = JUDGES.build("meta", {"judge": hf}, constitution=CONSTITUTION)
    v = built.plugin.prefer("What is 2 + 2?", "It's 4.", Verdict(1.0, True, "Correct. Score: 5"),
                            "Wrong. Score: 1")
    assert isinstance(v, PairVerdict) and len(v.raw) == 2  # random model: most likely invalid
    _assert_verdicts(built.plugin.score(ITEMS[:1]), 1)
    # With a consistent meta judge (always trusts the judgment that gave 5 points), both orders agree.
    built.plugin._llm = LLMJudge(_judgment_ask, "rubric", "prompt")
    v = built.plugin.prefer("What is 2 + 2?", "It's 4.", "Score: 1", "Correct. Score: 5")
    assert v.winner == "b" and v.position_consistent
    with pytest.raises(PluginSettingsError, match="LLM judge"):
        JUDGES.build("meta", {"judge": {"name": "rules"}}, constitution=CONSTITUTION)


def _judgment_ask(prompts: list[str]) -> list[str]:
    return ["Winner: A" if "Score: 5" in p.split("Judgment A: ")[1].split("\nJudgment B")[0]
            else "Winner: B" for p in prompts]


# -- the openai judge against a real loopback HTTP server -----------------------------------------

def test_openai_judge_against_a_served_tiny_model(random_backend: TransformersBackend) -> None:
    lock = threading.Lock()

    def respond(prompt: str, max_tokens: int) -> str:
        with lock:  # one model, several request threads
            spec = SamplingSpec(max_new_tokens=max_tokens, do_sample=False)
            return random_backend.generate([prompt], None, spec)[0].text

    server, url = serve_chat(respond)
    try:
        built = JUDGES.build("openai", {"base_url": url, "model": "tiny", "max_tokens": 6,
                                        "timeout": 30, "max_retries": 0})
        verdicts = built.plugin.score(ITEMS)
        _assert_verdicts(verdicts, len(ITEMS))
        expected = [respond(pointwise_prompt(it.prompt, it.response), 6) for it in ITEMS]
        assert [v.raw for v in verdicts] == expected
        assert len(built.plugin.compare([PairItem("q", "a", "b")])[0].raw) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_openai_judge_parses_served_verdicts_and_survives_timeouts() -> None:
    def respond(prompt: str, max_tokens: int) -> str:
        if "slow" in prompt:
            time.sleep(2.0)
        return "Winner: A" if "Reply A: good" in prompt else "Winner: B" if "Reply A:" in prompt \
            else "Reasoning.\nScore: 4"

    server, url = serve_chat(respond)
    try:
        judge = JUDGES.build("openai", {"base_url": url, "model": "m", "timeout": 0.5,
                                        "max_retries": 0}).plugin
        fast, slow = judge.score([JudgeItem("q", "fine"), JudgeItem("q", "slow")])
        assert fast.valid and fast.score == pytest.approx(0.75)
        assert not slow.valid and "Timeout" in slow.details["invalid"]
        [v] = judge.compare([PairItem("q", "good", "bad")])
        assert v.winner == "a" and v.position_consistent
    finally:
        server.shutdown()
        server.server_close()


def test_openai_judge_reads_its_key_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_TEST_KEY", raising=False)
    with pytest.raises(PluginSettingsError, match="TETHER_TEST_KEY"):
        JUDGES.build("openai", {"model": "m", "base_url": "http://127.0.0.1:9/v1",
                                "api_key_env": "TETHER_TEST_KEY"})


# -- jury aggregation -----------------------------------------------------------------------------

# -- the tiny world learns the judgment format ----------------------------------------------------

def test_judgment_source_teaches_the_exact_self_judge_prompt() -> None:
    from tools.worlds.tiny import tiny_world
    from tools.worlds.tiny.corpus import DEFAULT_SOURCES, JudgmentSource, corpus_examples

    examples = corpus_examples(tiny_world(0), 0, 1, (*DEFAULT_SOURCES, JudgmentSource()))
    judgments = [e for e in examples if e.source == "judgment"]
    assert judgments and all(parse_score(e.messages[1]["content"]).valid for e in judgments)
    e = judgments[0]
    assert e.messages[0]["content"].startswith(pointwise_prompt("", "").split("\nRequest:")[0])
    assert all(e.source != "judgment" for e in corpus_examples(tiny_world(0), 0, 1))  # off by default


def test_self_judge_on_a_short_tiny_world_build_is_parseable(tmp_path_factory: pytest.TempPathFactory) -> None:
    import random

    from tools.worlds.tiny import get_family, tiny_world
    from tools.worlds.tiny.model import TinySpec, build_tiny_model

    spec = TinySpec(steps=60, batch_size=16, seq_len=128, judgment_examples_per_prompt=2)
    model = build_tiny_model(tmp_path_factory.mktemp("judging") / "model", spec, progress=False)
    world, rng = tiny_world(0), random.Random(0)
    items = [JudgeItem(p.text, text) for p in world.heldout[::12]
             for _, text in get_family(p.family).responses(p, rng)]
    with TransformersBackend(str(model), device="cpu") as backend:
        verdicts = JUDGES.build("self", {}, policy=BackendPolicy(backend)).plugin.score(items)
    assert sum(v.valid for v in verdicts) / len(verdicts) >= 0.8
