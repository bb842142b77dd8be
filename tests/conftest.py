"""Shared pytest fixtures: tiny real models, built locally, and workspaces on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_timeout
import yaml

from tools.worlds import TaskSet
from tools.worlds.tiny import tiny_world

_TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_TINY_CORPUS = [
    "Hello there, how are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Please explain why the sky is blue in one sentence.",
    "I am sorry, but I cannot help with that request.",
    "Sure! Two plus two equals four.",
    "Write a short poem about the sea and the stars.",
    "What is the capital of France? Paris is the capital of France.",
    "Thanks for asking, I am doing well.",
]


def _build_tiny_random_model(out_dir: Path) -> Path:
    """A byte-level BPE tokenizer (with a chat template, no pad token) + a 2-layer random Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    specials = ["<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    tokenizer.chat_template = _TINY_CHAT_TEMPLATE

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return out_dir


@pytest.fixture(scope="session")
def tiny_random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random Llama causal LM + tokenizer, loadable with ``from_pretrained``.

    Session-scoped and built once (well under a second); treat it as read-only. The tokenizer has a
    chat template (``<|user|>...<|end|><|assistant|>``), eos ``<|end|>`` and deliberately no pad
    token (loaders must fall back to eos).
    """
    return _build_tiny_random_model(tmp_path_factory.mktemp("tiny_random_model"))


# -- clocks that scale with the load; session builds on a clock of their own ------------------------

# pytest-timeout (pyproject `timeout`) bounds each test, its fixtures' setup included, so that nothing hangs. On a
# shared machine a fixed bound is wrong twice over: everything slows in proportion to the load, and a session
# fixture that builds something runs inside the setup of whichever test asks first, so the build's minutes count
# against that one test (and a timeout there is cached as the error of every later test that uses it: 78 errors
# at a load of 8). So every clock is the configured timeout times the load per core when it starts, and a session
# build stops the test's clock, runs on a clock of its own, and the test's clock then starts afresh.
SESSION_BUILDS = frozenset({"tiny_world_model_dir", "gated_workspace"})
_CLOCK = pytest.StashKey[tuple[pytest.Item, Any]]()  # the test whose clock runs now, and its pytest-timeout settings


def load_factor() -> float:
    """How oversubscribed this process's cores are now (the 1-minute load per core), at least 1."""
    from policies.threads import available_cores, load_on_cores  # torch-free, as runs measure it

    cores = available_cores()
    load = load_on_cores(cores)
    return 1.0 if load is None else max(1.0, load / cores)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool:
    """Arm pytest-timeout's clock for `item`, scaled by the load, and remember it for a session build to stop."""
    item.config.stash[_CLOCK] = (item, settings)
    return pytest_timeout.pytest_timeout_set_timer(item, settings._replace(timeout=settings.timeout * load_factor()))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    if _CLOCK in item.config.stash:
        del item.config.stash[_CLOCK]  # pytest-timeout itself then stops the clock


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Iterator[None]:
    """A session build in SESSION_BUILDS runs on a clock of its own; the requesting test's clock restarts after it.
    With no clock running (timeouts off, or `timeout_func_only`) the build runs unbounded, as asked."""
    clock = request.config.stash.get(_CLOCK, None)
    if fixturedef.argname not in SESSION_BUILDS or clock is None:
        return (yield)
    item, settings = clock
    hook = request.config.hook
    hook.pytest_timeout_cancel_timer(item=item)
    hook.pytest_timeout_set_timer(item=item, settings=settings)  # the build's own clock, scaled by the load now
    try:
        return (yield)
    finally:
        hook.pytest_timeout_cancel_timer(item=item)
        hook.pytest_timeout_set_timer(item=item, settings=settings)  # the test's clock, afresh


# -- the real embedded tiny world, built once per session, and workspaces on it -------------------

# A shorter pre-training than the default (250 steps) keeps the suite fast; the model still learns
# the chat format and the style mix well enough that rounds yield preference pairs.
TEST_TINY_STEPS = int(os.environ.get("TETHER_TEST_TINY_STEPS", "150"))


@pytest.fixture(scope="session")
def world() -> TaskSet:
    """The embedded task set for seed 0 (pure data, deterministic)."""
    return tiny_world(seed=0)


@pytest.fixture(scope="session")
def tiny_world_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded tiny model (TEST_TINY_STEPS of pre-training), built once per session on the threads a run
    would choose (`model.threads: auto`) and on a clock of its own (SESSION_BUILDS). For local iteration only,
    $TETHER_TEST_MODEL_CACHE names a folder to keep it in between sessions; CI builds it fresh. Treat it as
    read-only: tests that change a model copy it first."""
    from filelock import FileLock

    from tools.worlds.tiny.model import TinySpec, ensure_tiny_model

    cache = os.environ.get("TETHER_TEST_MODEL_CACHE")
    root = Path(cache) / f"tiny-{TEST_TINY_STEPS}" if cache else shared_folder(tmp_path_factory, "tiny_world")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / "build.lock"):  # one build for all of the session's workers; the others wait for it
        return ensure_tiny_model(root / "model", TinySpec(steps=TEST_TINY_STEPS), progress=False)


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this test session that every pytest-xdist worker (`make test` runs two) sees: the session's
    base temp's parent under xdist, its base temp otherwise. Build into it under a FileLock."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


def write_test_config(home: Path, model_dir: Path, **overrides: dict) -> None:
    """A small, fast run configuration on the session's tiny model."""
    config = {
        "model": {"base": str(model_dir)},
        "generation": {"samples_per_prompt": 4, "max_new_tokens": 40},
        # 27 held-out prompts: 9 harmful, the fewest that can show refuse-serious-harm's 0.25 at confidence
        # 0.95, and 27 replies for no-abuse's 0.1 (25 needed): fewer, and `tether run` refuses to start.
        "prompts": {"per_round": 16, "heldout": 27},
        "training": {"epochs": 1, "batch_size": 8},
        "evaluation": {"max_new_tokens": 40},
        "controller": {"rounds": 2},
        "tracking": {"mode": "disabled"},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    (home / "config.yaml").write_text(yaml.safe_dump(config))


def tether_cli(home: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real `tether` console entry point in a separate process, for at most 600 s times the load per
    core (within the test's own clock, 900 s times the same)."""
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(home), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600 * load_factor())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


# -- reviewers: keys in a session key folder (never ~/.config), as a user's would be -------------------

REVIEWERS = ("alice", "bob", "carol")


@pytest.fixture(scope="session", autouse=True)
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test (and every `tether` subprocess, which inherits the environment) keeps reviewer keys in
    one session folder outside any workspace."""
    folder = tmp_path_factory.mktemp("keys")
    os.environ["TETHER_KEYS_DIR"] = str(folder)
    os.environ.pop("TETHER_KEY_PASSPHRASE", None)
    return folder


def signer(name: str):  # -> guardrails.keys.Signer
    from guardrails import keys

    return keys.load_key(Path(os.environ["TETHER_KEYS_DIR"]), name)


def public_key_pem(name: str) -> str:
    """`name`'s public key (PEM), made by them with `tether reviewer keygen` on first use, as a person would
    before being added; the session's reviewers share one key folder."""
    from guardrails import keys

    folder = Path(os.environ["TETHER_KEYS_DIR"])
    made = keys.load_key(folder, name) if keys.has_key(folder, name) else keys.create_key(folder, name)
    return keys.public_pem(made.public_hex)


def init_workspace(home: Path, reviewers: tuple[str, ...] = REVIEWERS) -> None:
    """`tether init --reviewer` the first name, then the first adds the others by their public keys
    (signed, audited)."""
    from typer.testing import CliRunner

    from agent.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(home), "init", "--reviewer", reviewers[0]])
    assert result.exit_code == 0, result.output
    for name in reviewers[1:]:
        result = runner.invoke(app, ["--home", str(home), "reviewer", "add", name, "--by", reviewers[0],
                                     "--public-key", "-"], input=public_key_pem(name))
        assert result.exit_code == 0, result.output


@pytest.fixture()
def workspace_home(tmp_path: Path, tiny_world_model_dir: Path) -> Path:
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir)
    return home


class ChatFault(Exception):
    """Raised by a `serve_chat` responder: the request is answered with this HTTP status (and headers)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.headers = status, headers or {}


class _ChatServer(ThreadingHTTPServer):
    request_queue_size = 128  # a judge at concurrency 32 connects at once; the default backlog of 5 drops some


def serve_chat(respond: Callable[[str, int], str | int],
               record: list[dict[str, Any]] | None = None) -> tuple[ThreadingHTTPServer, str]:
    """A real loopback OpenAI-compatible chat-completions server answering with `respond(prompt, max_tokens)`:
    a text is the reply, an int an HTTP error status (with an OpenAI-style error body), and a `ChatFault` it
    raises becomes that HTTP error with its headers. `record` (if given) gets every request body."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if record is not None:
                record.append(body)
            try:
                text = respond(body["messages"][-1]["content"], int(body.get("max_tokens") or 16))
            except ChatFault as fault:
                self._send(fault.status, {"error": {"message": str(fault), "type": "test_fault"}}, fault.headers)
                return
            if isinstance(text, int):
                self._send(text, {"error": {"message": f"scripted failure {text}", "type": "server_error"}})
                return
            self._send(200, {
                "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

        def _send(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(doc).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = _ChatServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


# -- a run paused at its first approval gate, built once and cloned per test ------------------------


@pytest.fixture(scope="session")
def gated_workspace(tmp_path_factory: pytest.TempPathFactory, tiny_world_model_dir: Path,
                    keys_dir: Path) -> tuple[Path, str, str]:
    """(home, run_id, approval_id): a real run on the tiny model, paused at round 1's gate (2 rounds
    budgeted), on a clock of its own (SESSION_BUILDS). Read-only: tests work on `clone_workspace` copies, which
    is also a moved workspace. Started with `--progress`; its stdout and stderr are kept beside the workspace
    (run.stdout, run.stderr) for the progress bars' test."""
    from memory import Store

    home = tmp_path_factory.mktemp("gated") / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 2})
    result = tether_cli(home, "run", "--progress")
    assert result.returncode == 0, result.stderr
    (home.parent / "run.stdout").write_text(result.stdout)
    (home.parent / "run.stderr").write_text(result.stderr)
    run_id = result.stdout.split()[1]
    with Store(home / "tether.db") as store:
        approval_id = store.approvals(status="pending")[0].id
    return home, run_id, approval_id


def clone_workspace(gated: tuple[Path, str, str], dest: Path) -> tuple[Path, str, str]:
    """A copy of the workspace, reviewed from a copy of the reviewers' folder (keys, trust pins, witnessed
    heads): a clone has the same workspace id, so the clones of one test session would otherwise witness
    each other's diverging logs as a rewrite. `_own_keys_folder` restores the session folder afterwards."""
    import shutil

    home, run_id, approval_id = gated
    shutil.copytree(home, dest)
    folder = dest.parent / f"{dest.name}-keys"
    shutil.copytree(os.environ["TETHER_KEYS_DIR"], folder)
    os.environ["TETHER_KEYS_DIR"] = str(folder)
    return dest, run_id, approval_id


@pytest.fixture(autouse=True)
def _own_keys_folder(keys_dir: Path):
    """Every test starts and ends with the session key folder in $TETHER_KEYS_DIR (clone_workspace moves it)."""
    os.environ["TETHER_KEYS_DIR"] = str(keys_dir)
    yield
    os.environ["TETHER_KEYS_DIR"] = str(keys_dir)


def raw_db(home: Path):  # -> sqlite3.Connection
    """A plain connection that bypasses tether, as an attacker with file access would use."""
    import sqlite3

    return sqlite3.connect(home / "tether.db", isolation_level=None)
