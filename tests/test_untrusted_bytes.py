"""Untrusted bytes run no code: graph.db checkpoints, adapter directories and model directories.

Every attack plants a payload that writes a marker file when it runs, loads it through tether's
own loaders and asserts the marker was not written. Each payload is also run once through the
unsafe path it targets (plain pickle, the permissive serializer, ``trust_remote_code=True``), so a
payload that silently stopped working would fail the test instead of passing it vacuously.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from agent.run.graph import StrictSerializer, UntrustedCheckpointError, checkpointer, compile_graph
from agent.run.state import RoundState
from policies.adapters import (
    AdapterIntegrityError,
    adapter_sha256,
    load_verified_adapter_weights,
    read_verified_adapter,
    verify_adapter,
)
from policies.loading import attach_adapter, load_base_model, load_tokenizer
from tether_types import AdapterRef


def _writes_marker(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


class _PicklePayload:
    """Unpickling this runs ``exec`` on code that writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (_writes_marker(self.marker),))


def _pickle_payload(marker: Path) -> bytes:
    payload = pickle.dumps(_PicklePayload(marker))
    pickle.loads(payload)  # the control: this payload does run when unpickled ...
    if not marker.exists():
        raise RuntimeError("the pickle payload did not write its marker when unpickled")
    marker.unlink()  # ... and the marker is gone again before the real attempt
    return payload


# -- graph.db: the LangGraph checkpointer -----------------------------------------------------------

THREAD = {"configurable": {"thread_id": "run-1", "checkpoint_ns": ""}}


def _saver(db: Path) -> SqliteSaver:
    saver = checkpointer(sqlite3.connect(db, check_same_thread=False))
    saver.setup()
    return saver


def _plant_checkpoint(db: Path, blob_type: str, blob: bytes) -> None:
    """Put a real checkpoint through the saver, then overwrite its blob with plain sqlite3."""
    saver = _saver(db)
    saver.put(THREAD, empty_checkpoint(), {"source": "input", "step": -1}, {})
    saver.conn.close()
    with sqlite3.connect(db) as conn:
        updated = conn.execute("UPDATE checkpoints SET type = ?, checkpoint = ?", (blob_type, blob)).rowcount
    if updated != 1:
        raise RuntimeError(f"expected one checkpoint row to plant into, found {updated}")


def _read_every_way(db: Path, *, refused: bool) -> CheckpointTuple | None:
    """Read the planted checkpoint as a resumed run would (get_tuple, then list), through a fresh
    saver; with ``refused`` each read must raise UntrustedCheckpointError."""
    saver = _saver(db)
    try:
        if refused:
            with pytest.raises(UntrustedCheckpointError):
                saver.get_tuple(THREAD)
            with pytest.raises(UntrustedCheckpointError):
                list(saver.list(THREAD))
            return None
        listed = list(saver.list(THREAD))
        if len(listed) != 1:
            raise RuntimeError(f"expected the one planted checkpoint, listed {len(listed)}")
        return saver.get_tuple(THREAD)
    finally:
        saver.conn.close()


def _checkpoint_with(value: Any) -> bytes:
    """A msgpack checkpoint whose ``run_id`` channel holds ``value`` (e.g. a hand-made ext)."""
    ckpt = dict(empty_checkpoint())
    ckpt["channel_values"] = {"run_id": value, "round": 1}
    return ormsgpack.packb(ckpt)


def test_strict_checkpointer_round_trips_the_graph_state_and_an_interrupt(tmp_path: Path) -> None:
    """Strict mode loses nothing tether stores: RoundState values, an interrupt and its resume."""

    def gate(state: RoundState) -> dict[str, Any]:
        decision = interrupt({"approval_id": "ap-1", "checkpoint": "ck-1", "summary": "round 1"})
        return {"outcome": decision, "prompt_ids": [*state.get("prompt_ids", []), "p-3"]}

    graph = StateGraph(RoundState)
    graph.add_node("gate", gate)
    graph.add_edge(START, "gate")
    graph.add_edge("gate", END)
    thread = {"configurable": {"thread_id": "run-1"}}
    db = tmp_path / "graph.db"
    initial = {"run_id": "run-1", "round": 2, "prompt_ids": ["p-1", "p-2"], "action": "train",
               "candidate": None}

    first = checkpointer(sqlite3.connect(db, check_same_thread=False))
    graph.compile(checkpointer=first).invoke(initial, thread)
    first.conn.close()

    # A fresh process's view: a new connection and saver read everything back from graph.db.
    second = checkpointer(sqlite3.connect(db, check_same_thread=False))
    compiled = graph.compile(checkpointer=second)
    paused = compiled.get_state(thread)
    assert [i.value for i in paused.interrupts] == [
        {"approval_id": "ap-1", "checkpoint": "ck-1", "summary": "round 1"}
    ]
    assert paused.values == initial
    final = compiled.invoke(Command(resume="approved"), thread)
    second.conn.close()
    assert final == {**initial, "outcome": "approved", "prompt_ids": ["p-1", "p-2", "p-3"]}


def test_the_real_graph_compiles_with_the_strict_checkpointer(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "graph.db", check_same_thread=False)
    try:
        compiled = compile_graph(checkpointer(conn))
        serde = compiled.checkpointer.serde
        assert isinstance(serde, StrictSerializer)
        # No pickle on the write side either: an object msgpack cannot encode is an error.
        unencodable = _PicklePayload(tmp_path / "never")
        assert JsonPlusSerializer(pickle_fallback=True).dumps_typed(unencodable)[0] == "pickle"
        with pytest.raises(TypeError, match="not msgpack serializable"):
            serde.dumps_typed(unencodable)
    finally:
        conn.close()


def test_pickle_checkpoint_in_graph_db_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = _pickle_payload(marker)
    # The permissive serializer with its pickle fallback would have run it:
    JsonPlusSerializer(pickle_fallback=True).loads_typed(("pickle", payload))
    assert marker.exists()
    marker.unlink()

    db = tmp_path / "graph.db"
    _plant_checkpoint(db, "pickle", payload)
    _read_every_way(db, refused=True)
    assert not marker.exists()


def test_pickle_pending_write_in_graph_db_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = _pickle_payload(marker)
    db = tmp_path / "graph.db"
    saver = _saver(db)
    config = saver.put(THREAD, empty_checkpoint(), {"source": "input", "step": -1}, {})
    saver.put_writes(config, [("run_id", "run-1")], task_id="task-1")
    saver.conn.close()
    with sqlite3.connect(db) as conn:
        updated = conn.execute("UPDATE writes SET type = 'pickle', value = ?", (payload,)).rowcount
    assert updated == 1

    _read_every_way(db, refused=True)
    assert not marker.exists()


def test_legacy_json_checkpoint_is_refused(tmp_path: Path) -> None:
    """The old "json" blob type revives constructors by module path; tether never writes it."""
    marker = tmp_path / "marker"
    blob = json.dumps({"lc": 2, "type": "constructor", "id": ["builtins", "exec"],
                       "args": [_writes_marker(marker)]}).encode()
    JsonPlusSerializer(allowed_json_modules=True).loads_typed(("json", blob))  # the control
    assert marker.exists()
    marker.unlink()

    db = tmp_path / "graph.db"
    _plant_checkpoint(db, "json", blob)
    _read_every_way(db, refused=True)
    assert not marker.exists()


# msgpack ext codes that name a callable by module and name (langgraph's jsonplus EXT_* constants).
_EXT_CALLS: dict[str, tuple[int, Any]] = {
    "single_arg": (0, lambda m: ["builtins", "exec", _writes_marker(m)]),
    "positional_args": (1, lambda m: ["builtins", "exec", [_writes_marker(m)]]),
    "keyword_args": (2, lambda m: ["subprocess", "run", {"args": ["touch", str(m)]}]),
    "pydantic_v2": (5, lambda m: ["subprocess", "run", {"args": ["touch", str(m)]}, None]),
}


@pytest.mark.parametrize("kind", sorted(_EXT_CALLS))
def test_msgpack_ext_naming_a_function_is_never_called(tmp_path: Path, kind: str) -> None:
    code, build = _EXT_CALLS[kind]
    marker = tmp_path / "marker"
    blob = _checkpoint_with(ormsgpack.Ext(code, ormsgpack.packb(build(marker))))
    # langgraph's default serializer (no LANGGRAPH_STRICT_MSGPACK) imports and calls it:
    JsonPlusSerializer().loads_typed(("msgpack", blob))
    assert marker.exists()
    marker.unlink()

    db = tmp_path / "graph.db"
    _plant_checkpoint(db, "msgpack", blob)
    loaded = _read_every_way(db, refused=False)
    assert not marker.exists()
    # The blocked call comes back as inert data (its arguments), never as a call's result.
    assert loaded is not None
    assert loaded.checkpoint["channel_values"]["run_id"] == build(marker)[2]


# -- adapter directories ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter_dir(tiny_random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LoRA adapter for the tiny model, as PEFT saves it (safetensors). Treat as read-only."""
    from peft import LoraConfig, get_peft_model

    from policies.loading import known_deprecations_silenced

    out = tmp_path_factory.mktemp("adapter") / "a1"
    model = load_base_model(str(tiny_random_model_dir), "cpu")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    with known_deprecations_silenced():
        get_peft_model(model, config).save_pretrained(out)
    return out


def _with_planted_pickle(adapter_dir: Path, tmp_path: Path, name: str, marker: Path) -> AdapterRef:
    """A copy of ``adapter_dir`` with a pickle payload next to the (untouched, valid) safetensors."""
    planted = tmp_path / "planted"
    shutil.copytree(adapter_dir, planted)
    ref = AdapterRef(id="planted", path=planted, sha256=adapter_sha256(planted))
    read_verified_adapter(planted, ref.sha256)  # the control: the adapter itself is fine
    (planted / name).write_bytes(_pickle_payload(marker))
    return ref


def test_adapter_with_adapter_model_bin_is_refused_and_never_unpickled(
    adapter_dir: Path, tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    ref = _with_planted_pickle(adapter_dir, tmp_path, "adapter_model.bin", marker)
    model = load_base_model(str(tiny_random_model_dir), "cpu")
    loaders = {
        "adapter_sha256": lambda: adapter_sha256(ref.path),
        "verify_adapter": lambda: verify_adapter(ref.path, ref.sha256),
        "read_verified_adapter": lambda: read_verified_adapter(ref.path, ref.sha256),
        "load_verified_adapter_weights": lambda: load_verified_adapter_weights(ref.path, ref.sha256),
        "attach_adapter": lambda: attach_adapter(model, ref),
    }
    for name, load in loaders.items():
        with pytest.raises(AdapterIntegrityError, match="adapter_model.bin") as info:
            load()
        assert "pickle" in str(info.value), name
    assert not hasattr(model, "peft_config")  # attach_adapter refused before injecting anything
    assert not marker.exists()


@pytest.mark.parametrize("name", ["training_state.pt", "weights.pth", "extra.pkl", "ADAPTER_MODEL.BIN"])
def test_any_pickle_format_file_in_an_adapter_dir_is_refused(
    adapter_dir: Path, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "marker"
    ref = _with_planted_pickle(adapter_dir, tmp_path, name, marker)
    with pytest.raises(AdapterIntegrityError, match=name.replace(".", r"\.")):
        read_verified_adapter(ref.path, ref.sha256)
    assert not marker.exists()


def test_adapters_module_does_not_import_torch() -> None:
    """guardrails verifies digests through policies.adapters and must stay free of torch."""
    code = "import sys, policies.adapters, guardrails.gate; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "False"


# -- model directories: remote code and pickle weights ----------------------------------------------

_EVIL_MODULE = """\
from pathlib import Path
Path({marker!r}).write_text("pwned")  # runs at import

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


class EvilConfig(LlamaConfig):
    model_type = "tether_evil"


class EvilForCausalLM(LlamaForCausalLM):
    config_class = EvilConfig


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def _remote_code_model(tiny_model: Path, tmp_path: Path, marker: Path) -> Path:
    """The tiny model, made into one that only its own ``modeling_evil.py`` can load."""
    evil = tmp_path / "evil"
    shutil.copytree(tiny_model, evil)
    (evil / "modeling_evil.py").write_text(_EVIL_MODULE.format(marker=str(marker)))
    config = json.loads((evil / "config.json").read_text())
    config["model_type"] = "tether_evil"  # no class of that type ships with transformers
    config["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig",
                          "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (evil / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((evil / "tokenizer_config.json").read_text())
    tokenizer_config["tokenizer_class"] = "EvilTokenizer"
    tokenizer_config["auto_map"] = {"AutoTokenizer": [None, "modeling_evil.EvilTokenizer"]}
    (evil / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return evil


@pytest.mark.parametrize("loader", ["tokenizer", "model"])
def test_remote_code_in_a_model_dir_is_never_imported(
    tiny_random_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    marker = tmp_path / "marker"
    evil = _remote_code_model(tiny_random_model_dir, tmp_path, marker)
    with pytest.raises(ValueError, match="custom code"):
        if loader == "tokenizer":
            load_tokenizer(str(evil))
        else:
            load_base_model(str(evil), "cpu")
    assert not marker.exists()

    # The control: with trust_remote_code=True transformers does import modeling_evil.py. Its module
    # cache is redirected into tmp_path so the test leaves nothing behind.
    import transformers.dynamic_module_utils as dynamic_modules

    monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    auto = AutoTokenizer if loader == "tokenizer" else AutoModelForCausalLM
    auto.from_pretrained(str(evil), trust_remote_code=True)
    assert marker.exists()


def test_base_model_with_only_pickle_weights_is_refused_and_never_unpickled(
    tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_random_model_dir, pickled)
    load_base_model(str(pickled), "cpu")  # the control: the copy loads while it has safetensors
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    (pickled / "pytorch_model.bin").write_bytes(_pickle_payload(marker))
    with pytest.raises(OSError, match="safetensors"):
        load_base_model(str(pickled), "cpu")
    assert not marker.exists()
