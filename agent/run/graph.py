"""The meta-controller's StateGraph: build, then compile with a checkpointer.

    plan -> prompts -> sample -> judge -> pairs -> monitor -> decide
      decide = train -> train_candidate -> evaluate -> check_invariants -> approval_gate -> commit
      decide = skip  -> plan (the round is not trained on, e.g. too many invalid judgments)
      decide = an intervention (each a node of its own, agent/interventions/<name>.py) -> plan
      decide = stop  -> END
"""

from __future__ import annotations

import sqlite3
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.interventions import interventions
from agent.run.context import RunContext
from agent.run.faults import with_fault_points
from agent.run.nodes import candidate, decide, evaluate, monitor
from agent.run.nodes import round as round_nodes
from agent.run.state import RoundState
from tether_types import TetherError

# The only blob types StrictSerializer writes. "pickle" would unpickle, and the legacy "json" type
# revives LangChain objects through a reviver that LangChain itself calls unsafe for untrusted input.
_READABLE_BLOB_TYPES = frozenset({"null", "bytes", "bytearray", "msgpack"})


class UntrustedCheckpointError(TetherError, RuntimeError):
    """graph.db holds a blob of a type this serializer never writes (pickle, legacy json, ...)."""


class StrictSerializer(JsonPlusSerializer):
    """Checkpoint serde that runs no code on load: no pickle, and msgpack reconstructs only
    LangGraph's built-in safe types (``allowed_msgpack_modules=None``); any other class named in a
    blob comes back as its raw arguments, never imported or called."""

    def __init__(self) -> None:
        super().__init__(pickle_fallback=False, allowed_msgpack_modules=None)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        blob_type = data[0]
        if blob_type not in _READABLE_BLOB_TYPES:
            raise UntrustedCheckpointError(
                f"refusing a checkpoint blob of type {blob_type!r}: tether writes only "
                f"{sorted(_READABLE_BLOB_TYPES)}; graph.db was written by something else or tampered with"
            )
        return super().loads_typed(data)


def checkpointer(conn: sqlite3.Connection) -> SqliteSaver:
    """The run's SQLite checkpointer on ``conn``, reading graph.db with :class:`StrictSerializer`.

    State holds only str/int/list/None and interrupt values are plain dicts, so strict msgpack
    loses nothing; a tampered graph.db must not be able to run code in the agent's process.
    """
    return SqliteSaver(conn, serde=StrictSerializer())


NODES: dict[str, Any] = {
    "plan": round_nodes.plan,
    "prompts": round_nodes.prompts,
    "sample": round_nodes.sample,
    "judge": round_nodes.judge,
    "pairs": round_nodes.pairs,
    "monitor": monitor.monitor,
    "decide": decide.decide,
    "train_candidate": candidate.train_candidate,
    "evaluate": evaluate.evaluate,
    "check_invariants": candidate.check_invariants,
    "approval_gate": candidate.approval_gate,
    "commit": candidate.commit,
    "discard": candidate.discard,
    **{spec.name: spec.node for spec in interventions()},  # one per registered intervention
}


def build_graph() -> StateGraph:
    graph = StateGraph(RoundState, context_schema=RunContext)
    for name, fn in NODES.items():
        graph.add_node(name, with_fault_points(name, fn))

    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", round_nodes.route_plan)
    graph.add_edge("prompts", "sample")
    graph.add_edge("sample", "judge")
    graph.add_edge("judge", "pairs")
    graph.add_edge("pairs", "monitor")
    graph.add_edge("monitor", "decide")
    graph.add_conditional_edges(
        "decide", decide.route_decision,
        {"train_candidate": "train_candidate", "plan": "plan", "stop": END,
         **{spec.name: spec.name for spec in interventions()}},
    )
    for spec in interventions():
        graph.add_edge(spec.name, "plan")
    graph.add_conditional_edges("train_candidate", candidate.route_trained)
    graph.add_edge("evaluate", "check_invariants")
    graph.add_conditional_edges("check_invariants", candidate.route_invariants)
    graph.add_conditional_edges("approval_gate", candidate.route_gate)
    graph.add_edge("commit", "plan")
    graph.add_edge("discard", "plan")
    return graph


def compile_graph(checkpointer: BaseCheckpointSaver) -> CompiledStateGraph:
    return build_graph().compile(checkpointer=checkpointer)
