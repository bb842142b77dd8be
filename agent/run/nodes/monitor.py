"""The monitor node, the last of a round's data half (nodes/round.py has the rest): every monitor reads one
`RoundObservation`, built here from the store (the round's samples, judgments and pairs, earlier rounds' pairs,
the last held-out values the controller may read), and their readings are stored on the round. Building the
observation is most of the node, so the monitors' inputs are all gathered in this one module.
"""

from __future__ import annotations

from collections import defaultdict

from langgraph.runtime import Runtime

from agent.interventions.switch_pairs import pairs_slot as pair_slot
from agent.run.context import RunContext
from agent.run.nodes.round import ANCHOR_ROUND, Update, base_logps
from agent.run.splits import controller_evaluation
from agent.run.state import RoundState
from memory import Judgment, Pair, Sample
from policies.progress import bar as progress_bar
from tools.judges import PairItem, compare
from tools.monitors import RoundObservation, run_monitors
from tools.monitors.base import PairwiseWinner as Winner


def monitor(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """Every monitor on the round. One that raises neither fails the round nor vanishes: its keys are
    stored under the monitors' `_could_not_check` entry with the reason (tether_types.py), and
    the controller treats a missing safety signal as fired."""
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    monitors = ctx.monitors
    # one step for the observation (it scores the samples under the base model) and one per monitor
    with ctx.timed("monitor"), progress_bar("monitoring", len(monitors) + 1, ctx.progress,
                                            unit="steps") as advance:
        obs = _observe(ctx, run_id, round_no)
        advance()
        readings = run_monitors(monitors, obs, done=advance)
    ctx.store.upsert_round(run_id, round_no, monitors=readings.to_json())
    ctx.tracker.log(round_no, readings.values)
    return {}


def _observe(ctx: RunContext, run_id: str, round_no: int) -> RoundObservation:
    by_sample = {j.sample_id: j for j in ctx.store.judgments(run_id, round_no)}
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in ctx.store.samples(run_id, round_no, split="train"):
        groups[s.prompt_id].append(s)
    ordered = list(groups.values())

    def score(s: Sample) -> float | None:
        j = by_sample.get(s.id)
        return j.score if j is not None and j.valid else None

    pairs = ctx.store.pairs(run_id, round_no)
    prompts = [ctx.prompt(g[0].prompt_id) for g in ordered]
    used = _used_before(ctx, run_id, round_no)
    defs = ctx.constitution.definitions
    return RoundObservation(
        prompts=[g[0].prompt for g in ordered],
        responses=[[s.response for s in g] for g in ordered],
        lengths=[[s.n_tokens for s in g] for g in ordered],
        scores=[[score(s) for s in g] for g in ordered],
        pair_margins=[p.margin for p in pairs],
        candidate_pairs=sum(1 for g in ordered if sum(score(s) is not None for s in g) >= 2),
        # Evaluation only: the oracle never reaches the judges; monitors measure judges against it. A world
        # without verifiers has none: None, so the oracle monitors stay silent (absent, never zero).
        oracle_scores=[[ctx.oracle(p, s.response) for s in g] for p, g in zip(prompts, ordered, strict=True)]
        if ctx.has_oracle else None,
        base_length_mean=_base_length_mean(ctx, run_id),
        pairwise=_position_checks(ctx, pairs),
        pool_scores=_pool_scores([by_sample.get(s.id) for g in ordered for s in g]),
        heldout=_last_heldout(ctx, run_id, round_no),
        prompt_reused=[p.id in used for p in prompts],
        # The constitution's own definitions (not the oracle): what the policy is asked to follow.
        benign=[not defs.is_harmful(p.text) for p in prompts],
        refusals=[[defs.is_refusal(s.response) for s in g] for g in ordered],
        families=[g[0].family for g in ordered],
        pair_families=[ctx.prompt(p.prompt_id).family for p in pairs],
        earlier_pairs=_earlier_pairs(ctx, run_id, round_no),
        base_logps=_drift_logps(ctx, ordered),
    )


def _drift_logps(ctx: RunContext, groups: list[list[Sample]]) -> list[list[float | None]] | None:
    """Per sample, shaped like the groups, its base-model log-prob (None for an empty response); None when
    the backend cannot score, so the drift monitor stays silent rather than guessing."""
    logps = base_logps(ctx, [(s.id, s.prompt, s.response) for g in groups for s in g])
    if logps is None:
        return None
    values = iter(logps)
    out: list[list[float | None]] = []
    for g in groups:
        row = [next(values) for _ in g]
        out.append([v if s.response else None for s, v in zip(g, row, strict=True)])
    return out


def _used_before(ctx: RunContext, run_id: str, round_no: int) -> set[str]:
    """Prompts sampled for training in rounds 1 .. round_no - 1. The base model's anchor samples
    (round ANCHOR_ROUND) do not make a prompt used: they are drawn in the round that first uses it."""
    used = set(ctx.store.used_prompt_ids(run_id, before_round=round_no))
    anchored = {s.prompt_id for s in ctx.store.samples(run_id, ANCHOR_ROUND, split="train")} & used
    if not anchored:
        return used
    trained = {s.prompt_id for r in range(1, round_no) for s in ctx.store.samples(run_id, r, split="train")}
    return (used - anchored) | (anchored & trained)


def _earlier_pairs(ctx: RunContext, run_id: str, round_no: int) -> list[list[tuple[str, float]]]:
    """(family, margin) of the kept pairs of each earlier round judged by this round's judge and built by
    its pair strategy, oldest first: margins of another judge or strategy are on another scale."""
    label, slot = ctx.judge_label(), pair_slot(ctx, round_no)
    switched = 0
    same: list[int] = []
    for r in ctx.store.rounds(run_id):
        if r.round >= round_no:
            break
        if (r.judge or {}).get("label") == label and switched == slot:
            same.append(r.round)
        switched += r.outcome == ctx.pair_strategies.switched
    by_round: dict[int, list[tuple[str, float]]] = {r: [] for r in same}
    for p in ctx.store.pairs(run_id, None):
        if p.round in by_round:
            by_round[p.round].append((ctx.prompt(p.prompt_id).family, p.margin))
    return [by_round[r] for r in same]


def _pool_scores(judgments: list[Judgment | None]) -> dict[str, list[float | None]] | None:
    """Per-member scores of a jury (recorded in each judgment's details), for pool agreement."""
    labels = next((list(j.details["members"]) for j in judgments if j and "members" in j.details), None)
    if not labels:
        return None

    def member(j: Judgment | None, label: str) -> float | None:
        value = (j.details.get("members") or {}).get(label) if j else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return {label: [member(j, label) for j in judgments] for label in labels}


def _base_length_mean(ctx: RunContext, run_id: str) -> float | None:
    """Mean length of what the base model sampled in this run (round 1, unless rolled back since)."""
    base = [s.n_tokens for s in ctx.store.samples(run_id, None, split="train", checkpoint_id=f"{run_id}-base")]
    return sum(base) / len(base) if base else None


def _position_checks(ctx: RunContext, pairs: list[Pair]) -> list[tuple[Winner | None, Winner | None]]:
    """Each pair judged again in both orders: how often the judge's verdict follows the position."""
    verdicts = compare(ctx.judge.plugin, [PairItem(p.prompt, p.chosen, p.rejected) for p in pairs])
    checks: list[tuple[Winner | None, Winner | None]] = []
    for v in verdicts:
        if v.winner is None:
            checks.append((None, None))
        elif v.position_consistent:
            checks.append((v.winner, v.winner))
        else:
            first, second = v.details.get("orders", ("tie", "tie"))
            checks.append((first, second))
    return checks


def _last_heldout(ctx: RunContext, run_id: str, round_no: int) -> dict[str, float] | None:
    """The latest held-out evaluation before this round (the evaluate node runs after monitor) that the
    controller may read: its validation split (a run before the split: its one set), never the test split."""
    earlier = [e for c in ctx.store.checkpoints(run_id) if 0 < c.round < round_no
               for e in [controller_evaluation(c.metrics)] if e is not None]
    if not earlier:
        return None
    evaluation = earlier[-1]
    return {f"{m}_{who}": evaluation[who][m] for who in ("active", "candidate") for m in ("oracle", "judge")
            if m in evaluation[who]}  # no oracle key for a world without verifiers
