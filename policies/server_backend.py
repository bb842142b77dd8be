"""Served generation: an OpenAI-compatible completions server samples the round (``generation.backend: server``).

Any server with vLLM's routes: ``/v1/completions`` and ``/v1/models``, and for adapters
``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` (``vllm serve MODEL --enable-lora`` started with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), as TRL's ``vllm_mode: server`` uses it. Prompts are rendered
with the chat template here and sent as token ids, so the server adds no second BOS and every backend sees
the same tokens. One request per prompt (``n`` samples, seed ``spec.seed + prompt index`` as the vLLM
backend seeds), at most ``max_concurrency`` in flight.

An adapter is loaded by path under a name that carries its SHA-256 (``tether-<id>-<sha256[:16]>``): its files
are verified against the digest before the server is asked to read them and again after it has (the server
reads the folder itself, so it must see the workspace's adapters at the same path). Every completion names
the model that answered it (the response's ``model`` field); an answer from any other model or adapter than
the one asked for is refused (:class:`ServedModelMismatch`), so no sample is ever recorded against an
adapter that did not produce it. A sample's ``served_by`` keeps that name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from policies.adapters import verify_adapter
from policies.chat import format_prompt, has_chat_template
from policies.loading import load_tokenizer
from tether_types import AdapterRef, Generation, GenerationStats, SamplingSpec, TetherError

# What vLLM (and SGLang) read as "no top-k"; tether's own spelling of off is 0.
TOP_K_OFF = -1
PROBE_TIMEOUT = 15.0  # seconds a pre-flight request waits at most, whatever generation.server.timeout says


class ServedModelMismatch(TetherError, RuntimeError):
    """The server answered with another model or adapter than the one asked for: nothing it said is kept."""


class ServerRefused(TetherError, RuntimeError):
    """The server refused or could not do what it was asked (load an adapter, answer a request)."""


def adapter_name(adapter: AdapterRef) -> str:
    """The name an adapter is loaded under: its id and digest, so an answer names the bytes that produced it."""
    return f"tether-{adapter.id}-{adapter.sha256[:16]}"


def request_params(spec: SamplingSpec, seed: int) -> dict[str, Any]:
    """The sampling settings of one completions request, one to one with ``spec``: greedy is temperature 0 with
    every token allowed; top_k travels in the body as vLLM's extra parameter (off: -1)."""
    greedy = spec.greedy
    return {
        "n": 1 if greedy else spec.n,
        "max_tokens": spec.max_new_tokens,
        "temperature": 0.0 if greedy else spec.temperature,
        "top_p": 1.0 if greedy else spec.top_p,
        "seed": seed,
        "extra_body": {"top_k": TOP_K_OFF if greedy or spec.top_k == 0 else spec.top_k},
    }


def api_key(api_key_env: str | None) -> str:
    """The key named by ``api_key_env``; "EMPTY" (what `vllm serve` accepts) when none is configured."""
    if not api_key_env:
        return "EMPTY"
    key = os.environ.get(api_key_env, "")
    if not key:
        raise ServerRefused(f"environment variable {api_key_env} (generation.server.api_key_env) is not set: "
                            "export the server's key in the shell that runs tether")
    return key


class ServerBackend:
    """Samples on a completions server; the base model (``adapter=None``) is ``model`` on the server."""

    def __init__(
        self,
        model_ref: str,
        *,
        base_url: str,
        model: str,
        adapters_url: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 2,
        max_concurrency: int = 8,
        progress: bool = False,  # taken as every backend takes it; a served round shows no bar
    ) -> None:
        from openai import OpenAI

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.model_ref, self.model = str(model_ref), model
        self.max_concurrency = max_concurrency
        self.tokenizer = load_tokenizer(self.model_ref)  # the chat template and token counts, no weights
        key = api_key(api_key_env)
        self._client = OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)
        # The adapter routes sit beside the completions (vLLM) or where adapters_url says (SGLang's root).
        self._adapters = (self._client if adapters_url is None else
                          OpenAI(base_url=adapters_url, api_key=key, timeout=timeout, max_retries=max_retries))
        self._loaded: dict[str, AdapterRef] = {}  # name -> the adapter this process loaded under it
        self.last_stats: GenerationStats | None = None

    # -- adapters -------------------------------------------------------------------------------

    def _served_name(self, adapter: AdapterRef | None) -> str:
        if adapter is None:
            return self.model
        name = adapter_name(adapter)
        verify_adapter(adapter.path, adapter.sha256)  # on every selection, as the local backends do
        if self._loaded.get(name) != adapter:
            self._load(name, adapter)
        return name

    def _load(self, name: str, adapter: AdapterRef) -> None:
        """(Re)load ``adapter`` under ``name`` from its verified folder. A name the server already holds (an
        earlier process's load) is unloaded first, so what it serves under the name is read from this path."""
        self._post("unload_lora_adapter", {"lora_name": name}, missing_ok=True)
        self._post("load_lora_adapter", {"lora_name": name, "lora_path": str(adapter.path.absolute())})
        verify_adapter(adapter.path, adapter.sha256)  # the files the server read are still the ones verified
        self._loaded[name] = adapter

    def _post(self, route: str, body: dict[str, Any], missing_ok: bool = False) -> None:
        """POST to an adapter route; any answer but success (or, with ``missing_ok``, 404) is refused."""
        import httpx
        from openai import APIStatusError, OpenAIError

        try:
            self._adapters.post(f"/{route}", body=body, cast_to=httpx.Response)
            return
        except APIStatusError as err:
            if missing_ok and err.status_code == 404 and "lora" in err.response.text.lower():
                return  # the route exists and the name is not loaded (a missing route answers 404 too)
            detail = f"HTTP {err.status_code} {err.response.text[:300]}"
        except OpenAIError as err:
            detail = f"{type(err).__name__}: {str(err)[:300]}"
        raise ServerRefused(f"the server refused {route} {body}: {detail}; start it with --enable-lora (vLLM: "
                            "and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), a --max-lora-rank of at least "
                            "training.lora_r, and the workspace's adapters at the same path")

    # -- generation -----------------------------------------------------------------------------

    def _prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        templated = has_chat_template(self.tokenizer)
        return [self.tokenizer(format_prompt(self.tokenizer, p), add_special_tokens=not templated)["input_ids"]
                for p in prompts]

    def _complete(self, name: str, ids: list[int], spec: SamplingSpec, seed: int) -> tuple[str, list[str]]:
        """(the model that answered, the texts of its choices in order) for one prompt."""
        from openai import OpenAIError

        try:
            reply = self._client.completions.create(model=name, prompt=ids, **request_params(spec, seed))
        except OpenAIError as err:
            raise ServerRefused(f"the completions server did not answer for model {name!r}: "
                                f"{type(err).__name__}: {str(err)[:300]}") from err
        choices = sorted(reply.choices, key=lambda c: c.index)
        return reply.model, [c.text for c in choices]

    def generate(
        self, prompts: Sequence[str], adapter: AdapterRef | None, spec: SamplingSpec
    ) -> list[Generation]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        started = time.perf_counter()
        if not prompts:
            self.last_stats = GenerationStats(tokens=0, seconds=0.0)
            return []
        name = self._served_name(adapter)
        ids = self._prompt_ids(prompts)
        with ThreadPoolExecutor(min(self.max_concurrency, len(prompts))) as pool:
            replies = list(pool.map(lambda i: self._complete(name, ids[i], spec, spec.seed + i), range(len(prompts))))
        n_return = 1 if spec.greedy else spec.n
        results: list[Generation] = []
        for prompt_index, (served, texts) in enumerate(replies):
            if served != name:  # fail closed: the whole batch is refused, nothing is recorded
                raise ServedModelMismatch(
                    f"the server answered prompt {prompt_index} with model {served!r}, not {name!r} (asked for "
                    f"{'the base model' if adapter is None else f'adapter {adapter.id}'}): refusing the samples. "
                    "Point generation.server at a server that serves the run's model by that name and loads "
                    "adapters by path (vLLM: --enable-lora, VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)")
            if len(texts) != n_return:
                raise ServerRefused(f"the server returned {len(texts)} choices for prompt {prompt_index}, asked "
                                    f"for {n_return}")
            for sample_index in range(spec.n):
                text = texts[sample_index if n_return > 1 else 0]  # greedy: decoded once, repeated n times
                # Counted by re-encoding the text here (a server's per-choice token ids are not standard).
                n_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                results.append(Generation(prompt_index, sample_index, text, n_tokens, served_by=served))
        self.last_stats = GenerationStats(tokens=sum(g.n_tokens for g in results),
                                          seconds=time.perf_counter() - started)
        return results

    def close(self) -> None:
        """Close the connections. Loaded adapters stay on the server: their names carry their digests, and a
        later process reloads any it uses from its own verified path."""
        self._client.close()
        if self._adapters is not self._client:
            self._adapters.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_problems(base_url: str, model: str, adapters_url: str | None = None, api_key_env: str | None = None,
                   timeout: float = 300.0, **_: Any) -> list[str]:
    """Pre-flight (`tether validate`, `tether run`): the server answers, serves ``model`` under that name and
    answers with it, and has the LoRA-adapter routes. Three short requests, no retries; nothing is loaded."""
    from openai import OpenAI

    where = f"generation.server at {base_url}, model {model}"
    try:
        key = api_key(api_key_env)
    except ServerRefused as err:
        return [f"{where}: {err}"]
    wait = min(timeout, PROBE_TIMEOUT)
    client = OpenAI(base_url=base_url, api_key=key, timeout=wait, max_retries=0)
    adapters = OpenAI(base_url=adapters_url or base_url, api_key=key, timeout=wait, max_retries=0)
    try:
        return _probe(client, adapters, model, where, adapters_url or base_url)
    finally:
        client.close()
        adapters.close()


def _probe(client: Any, adapters: Any, model: str, where: str, adapters_at: str) -> list[str]:
    import httpx
    from openai import APIStatusError, OpenAIError

    try:
        served = [m.id for m in client.models.list()]
        if model not in served:
            return [f"{where}: the server does not serve {model!r} (it serves {served}): set generation.server.model "
                    "to the name it serves the run's model.base under"]
        reply = client.completions.create(model=model, prompt="Hello", max_tokens=1, temperature=0.0)
        if reply.model != model:
            return [f"{where}: asked for {model!r}, the server answered as {reply.model!r}: a server that does not "
                    "name the model that answered cannot show which adapter sampled a round"]
    except OpenAIError as err:
        return [f"{where}: unreachable or refused: {type(err).__name__}: {str(err)[:300]}: start the server, or "
                "correct base_url, the model name or the key"]
    try:  # a body without its fields: the route refuses it as bad input (400/422); a missing route answers 404
        adapters.post("/load_lora_adapter", body={}, cast_to=httpx.Response)
    except APIStatusError as err:
        if err.status_code in (404, 405):
            return [f"{where}: no LoRA-adapter API at {adapters_at}/load_lora_adapter (HTTP {err.status_code}): "
                    "start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or set "
                    "generation.server.adapters_url to where the server's adapter routes are"]
    except OpenAIError as err:
        return [f"{where}: its LoRA-adapter API did not answer: {type(err).__name__}: {str(err)[:300]}"]
    return []
