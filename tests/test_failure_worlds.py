"""The failure worlds (tools/worlds/tiny/failures/) and their benchmark (benchmarks/bench_suite.py).

Each world builds, its task set is valid (disjoint, deterministic per seed, the tiny split its model was
pre-trained against), its oracle scores its families, and its failure is really there, checked cheaply
without training: the judge or pool or constitution its scenario configures gets it wrong where the oracle
gets it right. Then the suite's planning and aggregation on synthetic results, and one real slice of it in a
subprocess (1 world x 2 systems x 1 seed x 1 round on the session's tiny model).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.interventions.regenerate_prompts import RegenerateTriggerConfig
from agent.interventions.switch_judge import SwitchJudgeConfig
from guardrails import amendments
from guardrails.constitution import Constitution, default_constitution_yaml, parse_constitution
from tether_types import Prompt
from tools.judges import JUDGES, JudgeItem, PairItem
from tools.judges.degrading import DegradingJudge
from tools.prompts import PROMPT_GENERATORS
from tools.worlds import WORLDS, AuditProbeSource, ModelBuilder, TaskSet, World
from tools.worlds.tiny import FAMILIES, tiny_world
from tools.worlds.tiny.detectors import REFUSALS
from tools.worlds.tiny.failures import SCENARIOS, FailureWorld

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the suite's functions: benchmarks/ is no package
import bench_suite  # noqa: E402

WORLD_NAMES = ("length_paying_judge", "blind_family", "invisible_drift", "prompt_saturation",
               "distribution_collapse", "over_cautious_constitution", "unreliable_judge")


def _world(name: str, seed: int = 0) -> FailureWorld:
    world = WORLDS.build(name, {}, seed=seed).plugin
    assert isinstance(world, FailureWorld)
    return world


def _responses(prompt: Prompt, seed: int = 0) -> dict[str, str]:
    """The family's corpus answers to `prompt`, by style (good, wrong, over_refusal, rude, padded)."""
    return dict(FAMILIES[prompt.family].responses(prompt, random.Random(seed)))


def _first(taskset: TaskSet, family: str) -> Prompt:
    return taskset.by_family(family, "heldout")[0]


def _default_constitution() -> Constitution:
    return parse_constitution(default_constitution_yaml(), "default")


# -- every world ------------------------------------------------------------------------------------------

def test_the_seven_failure_worlds_are_registered_with_a_scenario() -> None:
    assert set(SCENARIOS) == set(WORLD_NAMES)
    assert set(WORLD_NAMES) <= set(WORLDS.names())
    for name, scenario in SCENARIOS.items():
        assert scenario.failure and scenario.monitor and scenario.reaction, name
        # The scenario is ordinary configuration: it parses as a config, and every judge and strategy it names exists.
        config = parse_config(bench_suite.scenario_doc(name, scenario, 0, 3, "/models/m"), name)
        for slot in config.judge.slots():
            JUDGES.check(slot.name, slot.settings)
        assert config.world.name == name


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_a_failure_world_builds_and_its_task_set_is_valid(name: str) -> None:
    world = _world(name, seed=1)
    assert isinstance(world, World) and isinstance(world, ModelBuilder) and isinstance(world, AuditProbeSource)
    assert world.has_oracle and world.invariant_probes("refuse-serious-harm") is None
    ts = world.taskset()
    train, held = {p.text for p in ts.train}, {p.text for p in ts.heldout}
    assert ts.train and ts.heldout and not train & held
    assert "harmful" in ts.families  # the invariant probes come from the held-out slice
    # Deterministic per seed, and the seed moves it.
    again = _world(name, seed=1).taskset()
    assert [p.id for p in again.train] == [p.id for p in ts.train]
    assert [p.id for p in again.heldout] == [p.id for p in ts.heldout]
    assert [p.id for p in _world(name, seed=2).taskset().heldout] != [p.id for p in ts.heldout]
    # The tiny split of the seed: the tiny model of seed 1 never saw a held-out prompt in pre-training.
    tiny = tiny_world(1)
    assert {p.id for p in ts.heldout} <= {p.id for p in tiny.heldout}
    assert {p.id for p in ts.train} <= {p.id for p in tiny.train}
    assert world.model_folder == WORLDS.build("tiny", {}, seed=1).plugin.model_folder  # one build serves all
    assert len(world.audit_probes(seed=0, n=4)) == 4


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_a_failure_worlds_oracle_scores_its_families(name: str) -> None:
    world = _world(name)
    ts = world.taskset()
    for family in ts.families:
        prompt = _first(ts, family)
        answers = _responses(prompt)
        assert world.oracle(prompt, answers["good"]) == 1.0, (name, family)
        assert world.oracle(prompt, answers["wrong"]) < 1.0, (name, family)
    assert world.oracle(Prompt("x-1", "hi", "no-such-family", "train"), "hi") is None


# -- each world's failure, present without training -------------------------------------------------------

def test_length_paying_judge_pays_for_padding_the_oracle_penalises() -> None:
    world = _world("length_paying_judge")
    judge = JUDGES.build(SCENARIOS["length_paying_judge"].config["judge"]["name"]).plugin
    for family in ("arithmetic", "howto"):
        prompt = _first(world.taskset(), family)
        answers = _responses(prompt)
        padded, short = judge.score([JudgeItem(prompt.text, answers[s]) for s in ("padded", "good")])
        assert padded.score is not None and short.score is not None and padded.score > short.score
        assert world.oracle(prompt, answers["padded"]) < world.oracle(prompt, answers["good"])
    # The pool's next judge does not pay for it (padding costs under the constitution's `concise` principle).
    calculator = JUDGES.build("calculator", constitution=_default_constitution()).plugin
    prompt = _first(world.taskset(), "howto")
    answers = _responses(prompt)
    padded, short = calculator.score([JudgeItem(prompt.text, answers[s]) for s in ("padded", "good")])
    assert padded.score is not None and short.score is not None and padded.score < short.score


def test_blind_family_judge_scores_a_wrong_sum_like_a_right_one() -> None:
    world = _world("blind_family")
    assert world.taskset().families == ["arithmetic", "harmful"]
    prompt = _first(world.taskset(), "arithmetic")
    a, b, c = prompt.meta["a"], prompt.meta["b"], prompt.meta["answer"]
    op = "+" if prompt.meta["topic"] == "addition" else "-"
    right, wrong = f"{a} {op} {b} = {c}.", f"{a} {op} {b} = {c + 1}."
    rules = JUDGES.build("rules", constitution=_default_constitution()).plugin
    judged = rules.score([JudgeItem(prompt.text, right), JudgeItem(prompt.text, wrong)])
    assert judged[0].score == judged[1].score  # style only: blind to the number
    assert world.oracle(prompt, right) == 1.0 and world.oracle(prompt, wrong) == 0.0
    calculator = JUDGES.build("calculator", constitution=_default_constitution()).plugin  # the pool's next judge
    checked = calculator.score([JudgeItem(prompt.text, right), JudgeItem(prompt.text, wrong)])
    assert checked[0].score == 1.0 and checked[1].score == 0.0


def test_invisible_drift_judge_scores_an_off_topic_answer_like_an_answer() -> None:
    world = _world("invisible_drift")
    assert world.taskset().families == ["harmful", "howto"]
    rules = JUDGES.build("rules", constitution=_default_constitution()).plugin
    prompt = _first(world.taskset(), "howto")
    answers = _responses(prompt)
    fragment = " " + answers["wrong"].split(" ", 3)[-1]  # starts mid-sentence, about another topic
    judged = rules.score([JudgeItem(prompt.text, t) for t in (answers["good"], answers["wrong"], fragment)])
    assert judged[0].score == judged[1].score == judged[2].score == 1.0
    assert world.oracle(prompt, answers["good"]) == 1.0
    assert world.oracle(prompt, answers["wrong"]) < 0.5 and world.oracle(prompt, fragment) < 0.5
    assert SCENARIOS["invisible_drift"].config["pairs"]["pool"] == [{"name": "regularized"}]  # the fix it offers


def test_prompt_saturation_pool_is_used_up_after_two_rounds() -> None:
    per_round = parse_config({}, "defaults").prompts.per_round
    pool = PROMPT_GENERATORS.build("pool").plugin
    threshold = RegenerateTriggerConfig().max_prompt_reuse

    def reuse(taskset: TaskSet, rounds: int) -> float:
        """The share of round `rounds`' prompts drawn in earlier rounds (the prompt_reuse monitor's value)."""
        seen = {p.id for r in range(1, rounds) for p in pool.draw(taskset, r, per_round, 0)}
        now = pool.draw(taskset, rounds, per_round, 0)
        return sum(p.id in seen for p in now) / len(now)

    saturated = _world("prompt_saturation").taskset()
    assert len(saturated.train) == 2 * per_round
    assert reuse(saturated, 2) == 0.0
    assert reuse(saturated, 3) == 1.0 > threshold
    assert reuse(tiny_world(0), 3) == 0.0  # the whole tiny pool lasts many more rounds
    assert len(saturated.heldout) == len([p for p in tiny_world(0).heldout if p.family in saturated.families])


def test_distribution_collapse_judge_rewards_agreement_not_correctness() -> None:
    world = _world("distribution_collapse")
    judge = JUDGES.build(SCENARIOS["distribution_collapse"].config["judge"]["name"]).plugin
    prompt = _first(world.taskset(), "arithmetic")
    good = _responses(prompt)["good"]
    samples = [REFUSALS[0], REFUSALS[2], REFUSALS[0], good]
    scores = [v.score for v in judge.score([JudgeItem(prompt.text, s) for s in samples])]
    assert all(s is not None for s in scores)
    assert min(scores[:3]) > scores[3]  # the stock refusals outvote the one right answer
    assert [world.oracle(prompt, s) for s in samples] == [0.0, 0.0, 0.0, 1.0]
    # Converged samples satisfy it completely; varied right answers do not.
    assert [v.score for v in judge.score([JudgeItem(prompt.text, good)] * 3)] == [1.0, 1.0, 1.0]
    varied = [f"{prompt.meta['answer']}.", f"It's {prompt.meta['answer']}.", f"The answer is {prompt.meta['answer']}."]
    assert all((v.score or 0) < 1.0 for v in judge.score([JudgeItem(prompt.text, s) for s in varied]))


def test_over_cautious_constitution_prefers_refusing_a_benign_request_until_amended() -> None:
    world = _world("over_cautious_constitution")
    text = SCENARIOS["over_cautious_constitution"].constitution
    assert text is not None
    cautious, default = parse_constitution(text, "over_cautious.yaml"), _default_constitution()
    # Only principles differ: the invariants and definitions (immutable, pinned) are the default's.
    assert cautious.invariants == default.invariants and cautious.definitions == default.definitions
    prompt = _first(world.taskset(), "howto")
    answer, refusal = _responses(prompt)["good"], REFUSALS[2]
    # What the refusals monitor sees: a refusal of a request the constitution deems benign.
    assert not cautious.definitions.is_harmful(prompt.text) and cautious.definitions.is_refusal(refusal)
    rules = JUDGES.build("rules", constitution=cautious).plugin
    judged = rules.score([JudgeItem(prompt.text, refusal), JudgeItem(prompt.text, answer)])
    assert (judged[0].score or 0) > (judged[1].score or 0)
    assert world.oracle(prompt, refusal) == 0.0 and world.oracle(prompt, answer) == 1.0
    # The agent's draft (propose_amendment) adds a principle against over-refusal; under it the answer wins.
    draft = amendments.draft_over_refusal(cautious, text)
    assert draft is not None and "adds principle 'helpful'" in draft[1]
    amended = JUDGES.build("rules", constitution=parse_constitution(draft[0], "amended")).plugin
    after = amended.score([JudgeItem(prompt.text, refusal), JudgeItem(prompt.text, answer)])
    assert (after[0].score or 0) < (after[1].score or 0)


class _Clock:
    def __init__(self) -> None:
        self.round = 1

    def __call__(self) -> int:
        return self.round


def _position_consistency(judge: DegradingJudge, pairs: list[PairItem]) -> float:
    verdicts = judge.compare(pairs)
    return sum(v.valid and v.position_consistent for v in verdicts) / len(verdicts)


def test_unreliable_judge_degrades_from_its_round() -> None:
    world = _world("unreliable_judge")
    spec = SCENARIOS["unreliable_judge"].config["judge"]
    clock = _Clock()
    judge = JUDGES.build(spec["name"], spec["settings"], constitution=_default_constitution(), run_round=clock).plugin
    calculator = JUDGES.build("calculator", constitution=_default_constitution()).plugin
    items, pairs = [], []
    for prompt in world.taskset().heldout:
        answers = _responses(prompt)
        items += [JudgeItem(prompt.text, t) for t in answers.values()]
        pairs.append(PairItem(prompt.text, answers["good"], answers["wrong"]))
    honest = [v.score for v in calculator.score(items)]
    threshold = SwitchJudgeConfig().min_position_consistency
    for clock.round in (1, 2, 3):
        assert [v.score for v in judge.score(items)] == honest
        assert _position_consistency(judge, pairs) == 1.0
    clock.round = spec["settings"]["from_round"]
    degraded = judge.score(items)
    invalid = sum(not v.valid for v in degraded) / len(degraded)
    assert 0.03 < invalid < 0.2  # below max_invalid_share: a fixed recipe still trains on it
    changed = sum(v.valid and v.score != h for v, h in zip(degraded, honest, strict=True)) / len(degraded)
    assert changed > 0.3  # random scores
    assert _position_consistency(judge, pairs) < threshold  # what the judge_reliability monitor reads
    assert [v.valid for v in judge.score(items)] == [v.valid for v in degraded]  # the same items, every time


def test_the_degrading_judge_needs_the_runs_round() -> None:
    from tools.registry import PluginSettingsError

    with pytest.raises(PluginSettingsError, match="needs the run's round"):
        JUDGES.build("degrading", {})
    with pytest.raises(PluginSettingsError, match="from_round"):
        JUDGES.build("degrading", {"from_round": 0}, run_round=_Clock())


# -- the suite's planning and aggregation, on synthetic results -------------------------------------------

def test_the_plan_covers_every_world_system_and_seed_seeds_outermost() -> None:
    jobs = bench_suite.plan(["w1", "w2"], ["tether", "fixed"], [0, 1])
    assert len(jobs) == 8 and len(set(jobs)) == 8
    assert [j.seed for j in jobs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert jobs[0] == bench_suite.Job("w1", "tether", 0)


def test_the_suite_config_is_the_scenarios_for_every_system() -> None:
    name = "unreliable_judge"
    configs = {s: bench_suite.system_config(bench_suite.Job(name, s, 0), 4, "/models/m")
               for s in ("tether", "fixed", "regularized", "self_rewarding", "online_dpo")}
    shipped = parse_config({}, "defaults").controller.interventions
    assert configs["tether"].controller.interventions == shipped  # tether init's defaults, nothing tuned
    assert configs["online_dpo"].judge == configs["tether"].judge == configs["fixed"].judge
    assert configs["tether"].judge.name == "degrading"
    assert configs["fixed"].controller.interventions == [] and configs["regularized"].pairs.strategy == "regularized"
    assert configs["self_rewarding"].judge.name == "self" and configs["self_rewarding"].controller.rounds == 3
    assert {c.model.base for c in configs.values()} == {"/models/m"}
    assert {c.world.name for c in configs.values()} == {name}
    assert SCENARIOS[name].config["judge"]["settings"]["judge"] == {"name": "calculator"}


# -- one real slice -----------------------------------------------------------------------------------------

def test_the_suite_runs_a_small_slice(tiny_world_model_dir: Path, tmp_path: Path) -> None:
    """1 world x 2 systems x 1 seed x 1 round, as `make bench-suite` runs it (a subprocess), on the session's
    tiny model: the degrading judge is built inside a real run, and TRL's online DPO trains a round."""
    import _online_dpo

    systems = ["fixed", _online_dpo.SYSTEM]
    expected = systems if _online_dpo.available() else ["fixed"]
    out = tmp_path / "suite.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_suite.py"), "--world", "unreliable_judge", "--systems",
         *systems, "--seeds", "0", "--rounds", "1", "--model", str(tiny_world_model_dir), "--out", str(out),
         "--home", str(tmp_path / "runs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["system"] for r in report["runs"]] == expected
    for run in report["runs"]:
        assert [p["round"] for p in run["curve"]] == [0, 1] and run["curve"][1]["oracle"] is not None
        assert run["cpu_s"] > 0
    base = {run["curve"][0]["oracle"] for run in report["runs"]}
    assert len(base) == 1  # the same model and held-out slice: one base score for every system
    table = out.with_suffix(".md").read_text()
    assert "| unreliable_judge |" in table and all(s in table.splitlines()[0] for s in expected)
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_online_dpo_reports_the_test_split_the_runs_report() -> None:
    """Every system's curve is the test split's oracle: online DPO evaluates the same prompts a tether run reports
    on (never the validation split, nor the whole slice: round 0 would then differ between systems)."""
    import _online_dpo

    from agent.run.splits import evaluation_sets

    job = bench_suite.Job("unreliable_judge", _online_dpo.SYSTEM, 3)
    config = bench_suite.system_config(job, 2, "/models/m")
    world = WORLDS.build(job.world, {}, seed=job.seed).plugin
    sets = evaluation_sets(world.taskset(), config.prompts.heldout, config.seed, config.evaluation.validation_fraction)
    reported = _online_dpo.reported_prompts(world, config)
    assert [p.id for p in reported] == [p.id for p in sets.test] and len(reported) == config.prompts.heldout // 2
    assert not {p.id for p in reported} & {p.id for p in sets.validation}
