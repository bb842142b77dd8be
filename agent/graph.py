"""The meta-controller's StateGraph: build, then compile with a checkpointer.

    plan -> prompts -> sample -> judge -> pairs -> monitor -> decide
      decide = train -> train_candidate -> evaluate -> check_invariants -> approval_gate -> commit
      decide = skip  -> plan (the round is not trained on, e.g. too many invalid judgments)
      decide = switch_judge | regenerate_prompts | add_adversarial | propose_amendment -> plan
      decide = stop  -> END
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.context import RunContext
from agent.nodes import candidate, decide, interventions
from agent.nodes import round as round_nodes
from agent.state import RoundState

INTERVENTION_NODES: tuple[str, ...] = ("switch_judge", "regenerate_prompts", "add_adversarial", "propose_amendment")


def build_graph() -> StateGraph:
    graph = StateGraph(RoundState, context_schema=RunContext)
    graph.add_node("plan", round_nodes.plan)
    graph.add_node("prompts", round_nodes.prompts)
    graph.add_node("sample", round_nodes.sample)
    graph.add_node("judge", round_nodes.judge)
    graph.add_node("pairs", round_nodes.pairs)
    graph.add_node("monitor", round_nodes.monitor)
    graph.add_node("decide", decide.decide)
    graph.add_node("train_candidate", candidate.train_candidate)
    graph.add_node("evaluate", candidate.evaluate)
    graph.add_node("check_invariants", candidate.check_invariants)
    graph.add_node("approval_gate", candidate.approval_gate)
    graph.add_node("commit", candidate.commit)
    graph.add_node("discard", candidate.discard)
    for name in INTERVENTION_NODES:
        graph.add_node(name, getattr(interventions, name))

    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", round_nodes.route_plan)
    graph.add_edge("prompts", "sample")
    graph.add_edge("sample", "judge")
    graph.add_edge("judge", "pairs")
    graph.add_edge("pairs", "monitor")
    graph.add_edge("monitor", "decide")
    graph.add_conditional_edges(
        "decide", decide.route_decision,
        {"train_candidate": "train_candidate", "plan": "plan", "stop": END, **{n: n for n in INTERVENTION_NODES}},
    )
    for name in INTERVENTION_NODES:
        graph.add_edge(name, "plan")
    graph.add_edge("train_candidate", "evaluate")
    graph.add_edge("evaluate", "check_invariants")
    graph.add_conditional_edges("check_invariants", candidate.route_invariants)
    graph.add_conditional_edges("approval_gate", candidate.route_gate)
    graph.add_edge("commit", "plan")
    graph.add_edge("discard", "plan")
    return graph


def compile_graph(checkpointer: BaseCheckpointSaver) -> CompiledStateGraph:
    return build_graph().compile(checkpointer=checkpointer)
