"""The pairs node, switch_pairs and the controller's inputs on a real store with scripted samples, judge
and generation backend (no model): the run's pair strategy builds the pairs, anchored rejection draws
the base model's samples once, switch_pairs moves the strategy forward and a resumed run keeps it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langgraph.runtime import Runtime

from agent.config import TetherConfig
from agent.interventions import switch_pairs as interventions
from agent.interventions.pool import judge_pool, pair_pool
from agent.run.nodes import monitor as monitor_node
from agent.run.nodes import round as round_nodes
from agent.run.nodes.decide import controller_input
from memory import NewJudgment, NewSample, Run, Store
from tether_types import Generation, Prompt
from tools.judges.base import JudgeItem, Verdict

RUN = "run-1"
PROMPTS = {f"q{i}": Prompt(f"q{i}", f"What is {i} + {i}?", "arithmetic", "train", {}) for i in range(3)}


class Backend:
    """Every sample of every prompt is "base answer k"; records what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Any, int]] = []

    def generate(self, prompts: Sequence[str], adapter: Any, spec: Any) -> list[Generation]:
        self.calls.append((list(prompts), adapter, spec.n))
        return [Generation(prompt_index=i, sample_index=k, text=f"base answer {k}", n_tokens=3)
                for i in range(len(prompts)) for k in range(spec.n)]


class Judge:
    """Scores a base answer by its number (0, 0.1, ...), a policy answer by the number it ends with / 10."""

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [Verdict(float(it.response.split()[-1]) / 10, True, it.response) for it in items]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "tether.db")
    s.create_run(Run(id=RUN, config={}, config_sha256="c" * 64, seed=0, rounds_budget=5, constitution_version=1,
                     invariants={}, invariants_sha256="i" * 64))
    yield s
    s.close()


def context(store: Store, **pairs: Any) -> SimpleNamespace:
    @contextmanager
    def timed(stage: str) -> Iterator[None]:
        yield

    config = TetherConfig.model_validate({"pairs": pairs, "generation": {"samples_per_prompt": 3},
                                          "controller": {"interventions": ["switch_judge", "switch_pairs"]}})
    return SimpleNamespace(store=store, run_id=RUN, config=config, timed=timed, counts={"generated_tokens": 0},
                           prompt=PROMPTS.__getitem__, judge=SimpleNamespace(plugin=Judge()), backend=Backend(),
                           scored={}, judge_slot=0, judge_label=lambda slot=None: "rules",
                           judges=judge_pool(config), pair_strategies=pair_pool(config))


def play_round(store: Store, round_no: int, answers: dict[str, list[str]]) -> None:
    """A sampled and judged round: each prompt's answers as the policy gave them."""
    store.upsert_round(RUN, round_no, judge={"label": "rules", "name": "rules", "settings": {}})
    rows = [NewSample(run_id=RUN, round=round_no, split="train", prompt_id=pid, prompt=PROMPTS[pid].text,
                      family="arithmetic", response=text, n_tokens=2, sample_index=k, checkpoint_id=f"{RUN}-r1")
            for pid, texts in answers.items() for k, text in enumerate(texts)]
    ids = store.add_samples(rows)
    store.add_judgments([NewJudgment(sample_id=i, judge="rules", score=Judge().score([JudgeItem("", r.response)])[0]
                                     .score, valid=True, raw="", details={}) for i, r in zip(ids, rows, strict=True)])


def run_pairs(ctx: SimpleNamespace, round_no: int) -> None:
    assert round_nodes.pairs({"run_id": RUN, "round": round_no}, Runtime(context=ctx)) == {}  # type: ignore[typeddict-item]


ANSWERS = {"q0": ["policy 9", "policy 9", "policy 6"], "q1": ["policy 5", "policy 5"], "q2": ["policy 7"]}


def test_best_worst_by_default(store: Store) -> None:
    ctx = context(store)
    play_round(store, 1, ANSWERS)
    run_pairs(ctx, 1)
    pairs = store.pairs(RUN, 1)
    assert [(p.prompt_id, p.chosen, p.rejected) for p in pairs] == [("q0", "policy 9", "policy 6")]
    assert pairs[0].margin == pytest.approx(0.3) and not ctx.backend.calls
    assert store.get_round(RUN, 1).n_pairs == 1


def test_anchored_rejection_draws_the_base_models_samples_once(store: Store) -> None:
    ctx = context(store, strategy="anchored")
    play_round(store, 1, ANSWERS)
    run_pairs(ctx, 1)
    (prompts, adapter, n), = ctx.backend.calls
    assert adapter is None and n == 3 and sorted(prompts) == sorted(p.text for p in PROMPTS.values())
    anchors = store.samples(RUN, round_nodes.ANCHOR_ROUND, split="train", checkpoint_id=f"{RUN}-base")
    assert len(anchors) == 9 and not store.judgments(RUN, round_nodes.ANCHOR_ROUND)  # scored, not stored
    pairs = {p.prompt_id: p for p in store.pairs(RUN, 1)}
    # Every prompt is paired against the base model's worst sample, including q2 with one policy answer.
    assert set(pairs) == {"q0", "q1", "q2"}
    assert all(p.rejected == "base answer 0" and store.get_sample(p.rejected_sample_id).round == 0
               for p in pairs.values())
    assert pairs["q2"].chosen == "policy 7" and pairs["q2"].margin == pytest.approx(0.7)
    # A later round reuses the stored anchors: nothing is generated again.
    play_round(store, 2, {"q1": ["policy 6", "policy 2"]})
    run_pairs(ctx, 2)
    assert len(ctx.backend.calls) == 1 and len(store.pairs(RUN, 2)) == 1
    # The anchors do not make a prompt "used" in the round that drew them; an earlier round does.
    assert monitor_node._used_before(ctx, RUN, 1) == set()
    assert monitor_node._used_before(ctx, RUN, 2) == {"q0", "q1", "q2"}


def test_switch_pairs_moves_the_strategy_forward_and_survives_a_resume(store: Store) -> None:
    ctx = context(store, pool=[{"name": "anchored"}, {"name": "diverse"}])
    play_round(store, 1, ANSWERS)
    assert interventions.pairs_slot(ctx, 1) == 0
    store.add_decision(RUN, 1, "switch_pairs", "blind", {"pairs_switch": {"from": "best_worst", "to": "anchored",
                                                                          "why": "family_tie_rate 1 >= 0.8",
                                                                          "family": "arithmetic"}})
    state = {"run_id": RUN, "round": 1}
    interventions.switch_pairs(state, Runtime(context=ctx))  # type: ignore[arg-type]
    interventions.switch_pairs(state, Runtime(context=ctx))  # type: ignore[arg-type]  # re-entered: no-op
    assert store.get_round(RUN, 1).outcome == "pairs_switched"
    (logged,) = [d for d in store.decisions(RUN, 1) if d.actor == "tether"]
    assert logged.signals["from"] == "best_worst" and logged.signals["to"] == "anchored"
    assert logged.signals["family"] == "arithmetic" and "family_tie_rate" in logged.rationale
    assert interventions.pairs_slot(ctx, 1) == 0 and interventions.pairs_slot(ctx, 2) == 1
    assert interventions.pair_strategy(ctx, 2).name == "anchored"
    # The controller's inputs: the strategy per round and the next one of the pool.
    play_round(store, 2, ANSWERS)
    inp = controller_input(ctx, 2, 5, store.get_round(RUN, 2))  # type: ignore[arg-type]
    assert inp.now.pairs_strategy == "anchored" and inp.next_pairs == "diverse"
    assert [r.pairs_strategy for r in inp.past] == ["best_worst"]
    last = context(store, pool=[{"name": "anchored"}])
    assert controller_input(last, 2, 5, store.get_round(RUN, 2)).next_pairs is None  # type: ignore[arg-type]


def test_the_reference_follows_the_rounds_pair_strategy(store: Store) -> None:
    from tether_types import AdapterRef

    parent = AdapterRef(id="run-1-r1", path=Path("adapters/run-1-r1"), sha256="ab" * 32)
    ctx = context(store, pool=[{"name": "iterative_dpo"}])
    play_round(store, 1, ANSWERS)
    assert interventions.pair_reference(ctx, 1, parent) is None  # best_worst: the base model
    store.upsert_round(RUN, 1, outcome="pairs_switched")
    assert interventions.pair_reference(ctx, 2, parent) == parent  # iterative_dpo: the parent adapter
    assert interventions.pair_reference(ctx, 2, None) is None  # no adapter yet: the base model


def test_the_chosen_nll_follows_the_rounds_pair_strategy(store: Store) -> None:
    ctx = context(store, pool=[{"name": "rpo", "settings": {"alpha": 0.5}}])
    play_round(store, 1, ANSWERS)
    assert interventions.pair_chosen_nll(ctx, 1) == 0.0  # best_worst: plain DPO
    store.upsert_round(RUN, 1, outcome="pairs_switched")
    assert interventions.pair_chosen_nll(ctx, 2) == 0.5  # rpo from the round after the switch



class ScoringBackend(Backend):
    """Scores a response's naturalness: a reply starting with a space is a fragment (-3), any other -1."""

    def base_logprobs(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        self.scored = list(responses)
        return [-3.0 if r.startswith(" ") else -1.0 for r in responses]


def test_regularized_pairs_read_the_base_models_logprobs(store: Store) -> None:
    ctx = context(store, strategy="regularized")
    ctx.backend = ScoringBackend()
    play_round(store, 1, {"q0": [" fragment 5", "answer 5", "answer 0"], "q1": ["tied 5", " also tied 5"]})
    run_pairs(ctx, 1)
    pairs = {p.prompt_id: p for p in store.pairs(RUN, 1)}
    assert sorted(ctx.backend.scored) == sorted([" fragment 5", "answer 5", "answer 0", "tied 5", " also tied 5"])
    assert (pairs["q0"].chosen, pairs["q0"].rejected) == ("answer 5", "answer 0")  # the judge decides
    assert (pairs["q1"].chosen, pairs["q1"].rejected) == ("tied 5", " also tied 5")  # the base model settles a tie
    assert pairs["q1"].margin == pytest.approx(0.4)
    ctx.backend = Backend()  # a backend that cannot score: a clear error, not a silent best_worst
    play_round(store, 2, {"q0": ["answer 5", "answer 1"]})
    with pytest.raises(RuntimeError, match="needs base-model log-probs"):
        run_pairs(ctx, 2)


def test_vllm_with_a_strategy_that_reads_base_logprobs_is_refused() -> None:
    with pytest.raises(ValueError, match="regularized ranks responses by the base model's log-probs"):
        TetherConfig.model_validate({"model": {"device": "cuda"}, "generation": {"backend": "vllm"},
                                     "pairs": {"pool": [{"name": "regularized"}]}})
