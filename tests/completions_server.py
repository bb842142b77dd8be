"""A loopback server that speaks vLLM's OpenAI-compatible HTTP API over a local model, for the served-generation
tests: /v1/models, /v1/completions (token-id or text prompts; n, temperature, top_p, top_k, max_tokens, seed) and
the LoRA-adapter routes /v1/load_lora_adapter and /v1/unload_lora_adapter, which load a PEFT adapter from the path
they are given, as `vllm serve --enable-lora` with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True does. Generation is
transformers' `generate`; requests are served one at a time. Every completions body is kept in `requests`, as
received. `answer_as` makes it misbehave: every completion names that model instead of the one it was asked for.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class LoopbackModel:
    """The served model: the base under `name`, adapters under the names they were loaded with."""

    folder: Path
    name: str
    answer_as: str | None = None
    lora_routes: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)
    adapters: dict[str, str] = field(default_factory=dict)  # name -> the path it was loaded from
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model: Any = AutoModelForCausalLM.from_pretrained(self.folder).eval()

    def load(self, name: str, path: str) -> None:
        from peft import PeftModel

        from policies.loading import known_deprecations_silenced

        with self._lock, known_deprecations_silenced():
            if not self.adapters:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            else:
                self.model.load_adapter(path, adapter_name=name)
            self.adapters[name] = path

    def unload(self, name: str) -> None:
        with self._lock:
            del self.adapters[name]
            if self.adapters:
                self.model.delete_adapter(name)
            else:
                self.model = self.model.unload()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import contextlib

        import torch
        from transformers import GenerationConfig

        prompt = body["prompt"]
        ids = prompt if isinstance(prompt, list) else self.tokenizer(prompt)["input_ids"]
        temperature, n = float(body.get("temperature", 1.0)), int(body.get("n", 1))
        top_k = int(body.get("top_k", -1))
        eos = self.tokenizer.eos_token_id
        config = GenerationConfig(
            max_new_tokens=int(body.get("max_tokens", 16)), num_return_sequences=n, do_sample=temperature > 0,
            eos_token_id=eos, pad_token_id=eos,
            **({"temperature": temperature, "top_p": float(body.get("top_p", 1.0)), "top_k": max(top_k, 0)}
               if temperature > 0 else {}))
        with self._lock:
            adapter = body["model"] if body["model"] in self.adapters else None
            if adapter is not None:
                self.model.set_adapter(adapter)
                chosen = contextlib.nullcontext()
            else:
                chosen = self.model.disable_adapter() if self.adapters else contextlib.nullcontext()
            torch.manual_seed(int(body.get("seed", 0)))
            with torch.inference_mode(), chosen:
                out = self.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                          dtype=torch.long), generation_config=config)
        choices = []
        for i, row in enumerate(out[:, len(ids):].tolist()):
            ended = eos in row
            kept = row[: row.index(eos)] if ended else row
            choices.append({"index": i, "text": self.tokenizer.decode(kept, skip_special_tokens=True),
                            "finish_reason": "stop" if ended else "length", "logprobs": None})
        return {"id": "cmpl-loopback", "object": "text_completion", "created": 0,
                "model": self.answer_as or body["model"], "choices": choices,
                "usage": {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}}


def _error(message: str, status: int) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "BadRequestError", "code": status}}


def _route(served: LoopbackModel, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    if method == "GET" and path == "/v1/models":
        cards = [{"id": served.name, "object": "model", "root": str(served.folder)}]
        cards += [{"id": n, "object": "model", "root": p, "parent": served.name} for n, p in served.adapters.items()]
        return 200, {"object": "list", "data": cards}
    if method == "POST" and path == "/v1/completions":
        served.requests.append(body)
        if body.get("model") not in {served.name, *served.adapters}:
            return _error(f"The model `{body.get('model')}` does not exist.", 404)
        return 200, served.complete(body)
    if method == "POST" and path == "/v1/load_lora_adapter" and served.lora_routes:
        name, path_ = body.get("lora_name"), body.get("lora_path")
        if not name or not path_:
            return _error("Both 'lora_name' and 'lora_path' must be provided.", 400)
        if name in served.adapters:
            return _error(f"The lora adapter '{name}' has already been loaded.", 400)
        served.load(name, path_)
        return 200, f"Success: LoRA adapter '{name}' added successfully."
    if method == "POST" and path == "/v1/unload_lora_adapter" and served.lora_routes:
        name = body.get("lora_name")
        if name not in served.adapters:
            return _error(f"The lora adapter '{name}' cannot be found.", 404)
        served.unload(name)
        return 200, f"Success: LoRA adapter '{name}' removed successfully."
    return 404, {"detail": "Not Found"}


def serve_completions(served: LoopbackModel) -> tuple[ThreadingHTTPServer, str]:
    """Start `served` on a free loopback port; (the server, its base_url). Call `shutdown()` when done."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(*_route(served, "GET", self.path, {}))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            self._answer(*_route(served, "POST", self.path, body))

        def _answer(self, status: int, doc: Any) -> None:
            text = isinstance(doc, str)
            payload = doc.encode() if text else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
