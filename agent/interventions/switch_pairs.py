"""switch_pairs: move the run to the next pair strategy of pairs.pool (on by default, with `regularized` in the
default pool: the failure-worlds suite's evidence, README "Failure worlds").

It has no trigger of its own: the blind-spot trigger (a family whose preference signal collapsed:
blind_spot.py, when no judge is left to switch to) and the regression trigger (the policy over-optimises its
judge: regression.py) choose it. The strategy in force on a round is a slot of the run's pair pool
(agent/interventions/pool.py); the pairs node builds the round's pairs with it and the training job takes
its DPO reference and chosen-NLL weight from it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.interventions.pool import PAIRS_SWITCHED
from agent.interventions.record import done, finish
from agent.interventions.registry import INTERVENTIONS
from agent.interventions.spec import Intervention, Marker
from agent.sections.base import _Section

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from agent.run.context import RunContext
    from agent.run.state import RoundState
    from tether_types import AdapterRef
    from tools.pairs import PairStrategy
    from tools.registry import Built


def pairs_slot(ctx: RunContext, round_no: int) -> int:
    """The slot in force on round `round_no`: how many earlier rounds switched the pair strategy."""
    return ctx.pair_strategies.slot(ctx.store.rounds(ctx.run_id), before=round_no)


def pair_strategy(ctx: RunContext, round_no: int) -> Built[PairStrategy]:
    """The pair strategy that builds (and trains on) round `round_no`'s pairs."""
    return ctx.pair_strategies.build(pairs_slot(ctx, round_no))


def pair_reference(ctx: RunContext, round_no: int, parent: AdapterRef | None) -> AdapterRef | None:
    """The DPO reference adapter of round `round_no`'s training job: the parent adapter (the run's active
    checkpoint, verified by ctx.adapter) when the round's pair strategy trains against it (`reference:
    parent`, e.g. iterative_dpo), else None: the base model with the adapter disabled. In the first round,
    with no adapter yet, the parent is the base model either way."""
    return parent if pair_strategy(ctx, round_no).plugin.reference == "parent" else None


def pair_chosen_nll(ctx: RunContext, round_no: int) -> float:
    """Weight of the chosen responses' NLL in round `round_no`'s loss: its pair strategy's `chosen_nll`
    (rpo: DPO + NLL), 0 for plain DPO."""
    return float(pair_strategy(ctx, round_no).plugin.chosen_nll)


def _observe(ctx: RunContext, round_no: int) -> dict[str, Any]:
    return {"next_pairs": ctx.pair_strategies.next_label(pairs_slot(ctx, round_no))}


def switch_pairs(state: RoundState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if done(ctx, state):
        return {}
    round_no = state["round"]
    pool = ctx.pair_strategies
    slot = pairs_slot(ctx, round_no) + 1
    if slot >= len(pool):  # the controller only switches with a strategy left; fail loudly otherwise
        raise RuntimeError(f"switch_pairs on round {round_no}: no pair strategy left after slot {slot - 1}")
    why = next((d.signals.get("pairs_switch") or {} for d in reversed(ctx.store.decisions(state["run_id"], round_no))
                if d.actor == "controller" and d.action == "switch_pairs"), {})
    before, after, spec = pool.label(slot - 1), pool.label(slot), pool.slots[slot]
    family = f", family {why['family']}" if why.get("family") else ""
    reason = f" ({why['why']}{family})" if why.get("why") else ""
    with ctx.store.transaction():
        finish(ctx, state, PAIRS_SWITCHED,
               f"pair strategy {before} left{reason}; {after} builds the pairs from round {round_no + 1}",
               {"from": before, "to": after, "slot": slot,
                "spec": {"name": spec.name, "settings": dict(spec.settings)}, "family": why.get("family")})
    return {}


SWITCH_PAIRS: Intervention[_Section] = Intervention(
    name="switch_pairs", order=50, node=switch_pairs, marker=Marker("gold"), forward_only=True,
    observe=_observe,
)


@INTERVENTIONS.register("switch_pairs")
def spec() -> Intervention[_Section]:
    """Move the run to the next pair strategy of pairs.pool (chosen by the blind-spot and regression triggers)."""
    return SWITCH_PAIRS
