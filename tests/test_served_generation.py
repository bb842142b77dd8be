"""generation.backend: server — a round sampled by an OpenAI-compatible completions server (policies/server_backend.py),
against a loopback server speaking vLLM's HTTP API over the tiny models (tests/completions_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from completions_server import LoopbackModel, serve_completions

from conftest import init_workspace, tether_cli, write_test_config
from policies.chat import format_prompt
from policies.server_backend import ServedModelMismatch, ServerBackend, adapter_name, probe_problems
from tether_types import SamplingSpec


@pytest.fixture(scope="module")
def random_served(tiny_random_model_dir: Path) -> Iterator[tuple[LoopbackModel, str]]:
    served = LoopbackModel(tiny_random_model_dir, "tiny-random")
    server, url = serve_completions(served)
    yield served, url
    server.shutdown()


def test_sampling_settings_arrive_as_sent(random_served: tuple[LoopbackModel, str],
                                          tiny_random_model_dir: Path) -> None:
    served, url = random_served
    backend = ServerBackend(str(tiny_random_model_dir), base_url=url, model="tiny-random", max_concurrency=2)
    served.requests.clear()
    spec = SamplingSpec(n=3, max_new_tokens=5, temperature=0.7, top_p=0.9, top_k=20, seed=11)
    out = backend.generate(["Hello there", "What is the capital of France?"], None, spec)
    assert [(g.prompt_index, g.sample_index) for g in out] == [(p, s) for p in range(2) for s in range(3)]
    assert {g.served_by for g in out} == {"tiny-random"}
    sent = sorted(served.requests, key=lambda body: body["seed"])
    tokenizer = backend.tokenizer
    for i, (body, prompt) in enumerate(zip(sent, ["Hello there", "What is the capital of France?"], strict=True)):
        assert {k: body[k] for k in ("model", "n", "max_tokens", "temperature", "top_p", "top_k", "seed")} == {
            "model": "tiny-random", "n": 3, "max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
            "seed": 11 + i}
        # The chat-formatted prompt as token ids, with no second BOS: what every backend feeds the model.
        assert body["prompt"] == tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    served.requests.clear()
    greedy = backend.generate(["Hello there"], None, SamplingSpec(n=2, max_new_tokens=4, do_sample=False, seed=3))
    (body,) = served.requests
    assert (body["n"], body["temperature"], body["top_p"], body["top_k"]) == (1, 0.0, 1.0, -1)
    assert greedy[0].text == greedy[1].text  # decoded once, repeated n times, as the local backends do
    backend.close()


def test_an_answer_from_another_adapter_is_refused(tiny_random_model_dir: Path) -> None:
    liar = LoopbackModel(tiny_random_model_dir, "tiny-random", answer_as="tether-someone-else-0123456789abcdef")
    server, url = serve_completions(liar)
    try:
        backend = ServerBackend(str(tiny_random_model_dir), base_url=url, model="tiny-random")
        with pytest.raises(ServedModelMismatch, match="tether-someone-else.*not 'tiny-random'"):
            backend.generate(["Hello there"], None, SamplingSpec(n=2, max_new_tokens=3))
        (problem,) = probe_problems(url, "tiny-random")  # validate says it before a run starts
        assert "answered as 'tether-someone-else" in problem
    finally:
        server.shutdown()


def test_preflight_probes_the_server(random_served: tuple[LoopbackModel, str], tiny_random_model_dir: Path) -> None:
    served, url = random_served
    assert probe_problems(url, "tiny-random") == []
    (wrong_name,) = probe_problems(url, "llama")
    assert "does not serve 'llama'" in wrong_name and "set generation.server.model" in wrong_name
    no_lora = LoopbackModel(tiny_random_model_dir, "tiny-random", lora_routes=False)
    server, bare_url = serve_completions(no_lora)
    try:
        (problem,) = probe_problems(bare_url, "tiny-random")
        assert "no LoRA-adapter API" in problem and "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in problem
    finally:
        server.shutdown()
    (down,) = probe_problems("http://127.0.0.1:9/v1", "tiny-random")
    assert "unreachable or refused" in down


def test_a_round_sampled_by_the_server(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    """A real run, generation.backend server: round 1 samples the base on the server, the candidate is loaded
    into it by path under a name carrying its digest, its held-out replies come from it, and every sample
    records the model that answered it."""
    from memory import Store

    served = LoopbackModel(tiny_world_model_dir, "tiny-world")
    server, url = serve_completions(served)
    try:
        home = tmp_path / "ws"
        init_workspace(home)
        # Short replies: the loopback server decodes one prompt at a time.
        write_test_config(home, tiny_world_model_dir, controller={"rounds": 1}, evaluation={"max_new_tokens": 16},
                          generation={"backend": "server", "max_new_tokens": 16,
                                      "server": {"base_url": url, "model": "tiny-world"}})
        result = tether_cli(home, "run")
        assert result.returncode == 0, result.stderr
        run_id = result.stdout.split()[1]
        with Store(home / "tether.db") as store:
            train = store.samples(run_id, 1, split="train")
            (candidate,) = [c for c in store.checkpoints(run_id) if c.round == 1]
            heldout = [s for s in store.samples(run_id, 1) if s.checkpoint_id == candidate.id]
            adapter_dir = store.resolve(candidate.path)
        assert train and {s.served_by for s in train} == {"tiny-world"}
        name = adapter_name_of(candidate.id, candidate.sha256)
        assert served.adapters == {name: str(adapter_dir.absolute())}
        assert heldout and {s.served_by for s in heldout} == {name}
    finally:
        server.shutdown()


def adapter_name_of(checkpoint_id: str, sha256: str | None) -> str:
    from tether_types import AdapterRef

    assert sha256 is not None
    return adapter_name(AdapterRef(checkpoint_id, Path("."), sha256))


def test_an_adapter_is_loaded_by_path_under_its_digest(random_served: tuple[LoopbackModel, str],
                                                       tiny_random_model_dir: Path, tmp_path: Path) -> None:
    from test_generation import make_random_adapter

    from policies.adapters import AdapterIntegrityError
    from policies.generation import TransformersBackend
    from tether_types import AdapterRef

    served, url = random_served
    ref = make_random_adapter(tiny_random_model_dir, tmp_path / "ck-1", "ck-1", seed=1)
    backend = ServerBackend(str(tiny_random_model_dir), base_url=url, model="tiny-random")
    greedy = SamplingSpec(n=1, max_new_tokens=8, do_sample=False)
    (out,) = backend.generate(["Hello there"], ref, greedy)
    assert served.adapters[adapter_name(ref)] == str(ref.path.absolute()) and out.served_by == adapter_name(ref)
    with TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=4) as local:
        (mine,) = local.generate(["Hello there"], ref, greedy)
        (base,) = local.generate(["Hello there"], None, greedy)
    assert out.text == mine.text != base.text  # the server applied exactly this adapter
    loaded = dict(served.adapters)
    with pytest.raises(AdapterIntegrityError):  # bytes that are not the recorded ones never reach the server
        backend.generate(["Hello there"], AdapterRef("ck-2", ref.path, "0" * 64), greedy)
    assert served.adapters == loaded
    backend.close()
