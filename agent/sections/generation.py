"""The generation section of the run configuration: which backend samples a round, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from agent.sections.base import MAX_BATCH, MAX_NEW_TOKENS, _Section

URL_PATTERN = r"^https?://[^\s]+$"


class ServerConfig(_Section):
    """An OpenAI-compatible completions server that samples the round (policies/server_backend.py): `vllm serve
    --enable-lora` started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or a server with the same routes."""

    base_url: str = Field(
        pattern=URL_PATTERN, description="The server's OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 "
        "(it answers /models and /completions).",
    )
    model: str = Field(
        min_length=1, description="The base model's name on the server (vLLM: its --served-model-name, else the "
        "path `vllm serve` was given): samples of the base model ask for it. It must serve the run's model.base; "
        "the server cannot prove that, so keep them the same checkpoint.",
    )
    adapters_url: str | None = Field(
        None, pattern=URL_PATTERN,
        description="Where the LoRA-adapter routes load_lora_adapter and unload_lora_adapter live; null = base_url "
        "(vLLM). The server reads the adapter folder by its path, so it must see the workspace's adapters/ at the "
        "same path.",
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the server's key (vllm serve --api-key); "
        "null = none.",
    )
    timeout: float = Field(300.0, gt=0.0, le=3600.0, description="Seconds a request may take, at most 3600.")
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed request (timeouts, 429, 5xx), with backoff, by the client."
    )
    max_concurrency: int = Field(
        8, ge=1, le=256, description="Completion requests in flight at once (one per prompt), 1 to 256.",
    )


class GenerationConfig(_Section):
    backend: Literal["transformers", "vllm", "server"] = Field(
        "transformers", description="transformers on CPU; vllm in this process on a GPU (extra `tether[gpu]`); "
        "server: an OpenAI-compatible completions server (generation.server), e.g. `vllm serve --enable-lora`.",
    )
    samples_per_prompt: int = Field(6, ge=2, le=64, description="K responses sampled per prompt, 2 to 64.")
    max_new_tokens: int = Field(
        48, ge=1, le=MAX_NEW_TOKENS, description=f"Cap on generated tokens, at most {MAX_NEW_TOKENS}."
    )
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(
        0, ge=0, le=100_000, description="Sample among the k most likely tokens only; 0 = off (every token).",
    )
    batch_size: int = Field(
        384, ge=1, le=MAX_BATCH,
        description=f"Sequences (prompts x samples) decoded together (transformers), at most {MAX_BATCH}; with "
        "compact batching a whole round in one batch is fastest.",
    )
    batching: Literal["static", "compact"] = Field(
        "compact", description="transformers: compact = drop rows from the batch as they end; static = every row "
        "decodes until the longest ends (the path before compaction, for comparison).",
    )
    workers: int = Field(
        1, ge=1, le=64,
        description="transformers: worker processes a round's prompts are split over, 1 to 64, each loading the "
        "model once and taking its share of model.threads; every sample is the one a single process draws "
        "(seeded per prompt and sample). 1 = sample in the run's process.",
    )
    server: ServerConfig | None = Field(
        None, description="The completions server backend 'server' samples on (required by it, refused otherwise).",
    )

    @model_validator(mode="after")
    def _server_with_its_backend(self) -> GenerationConfig:
        if self.backend == "server" and self.server is None:
            raise ValueError("backend 'server' needs generation.server (base_url and model of the completions "
                             "server)")
        if self.backend != "server" and self.server is not None:
            raise ValueError(f"generation.server is set but backend is {self.backend!r}: set backend: server, or "
                             "remove the server section")
        if self.workers > 1 and self.backend != "transformers":
            raise ValueError(f"workers splits the transformers backend's prompts over processes; backend "
                             f"{self.backend} shards on its own: set workers to 1")
        return self
