"""Benchmark: how fast the `openai` judge judges a round at several concurrencies, against a loopback
OpenAI-compatible endpoint that takes --latency seconds per request (a remote judge's time, without the
remote judge).

Each repetition judges the same --items (pointwise, or --mode pairwise: two requests a pair) once at each
--concurrency, side by side, so the speedups over concurrency 1 are ratios measured under the same load.
Prints and writes as JSON the seconds and judgments per second at each concurrency (median, min, max),
the speedups (median, min, max over repetitions), the most requests the endpoint saw in flight, and
whether every concurrency gave the same verdicts (exit 1 if not).

    python benchmarks/bench_judge_concurrency.py --out bench-out/judge-concurrency.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tools.judges import JUDGES, JudgeItem, PairItem, compare


class Endpoint(ThreadingHTTPServer):
    """Chat completions on loopback: each answer after `latency` s, decided by the prompt alone."""

    request_queue_size = 256  # every client thread may connect at once
    daemon_threads = True

    def __init__(self, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency = latency
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reset(self) -> None:
        with self.lock:
            self.max_in_flight = self.requests = 0

    def answer(self, prompt: str) -> str:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
            return answer(prompt)
        finally:
            with self.lock:
                self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint (vllm serve) has
    disable_nagle_algorithm = True  # as real servers do: headers and body go out at once, no 40 ms delayed-ACK stall
    server: Endpoint

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = self.server.answer(body["messages"][-1]["content"])
        payload = json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def _stars(reply: str) -> int:
    return 1 + int(hashlib.sha256(reply.encode()).hexdigest(), 16) % 5


def answer(prompt: str) -> str:
    """'Score: N' for a pointwise prompt; for a pairwise one the reply with more stars (either order agrees)."""
    if "\nReply A: " in prompt:
        a, b = prompt.split("\nReply A: ")[1].split("\nReply B: ")
        return "Winner: tie" if _stars(a) == _stars(b) else "Winner: A" if _stars(a) > _stars(b) else "Winner: B"
    return f"Because.\nScore: {_stars(prompt.split(chr(10) + 'Reply: ')[1])}"


def judge_once(url: str, concurrency: int, mode: str, n: int) -> tuple[float, list[Any]]:
    """Seconds to judge the round at `concurrency` (a fresh judge, as a run builds one), and its verdicts."""
    judge = JUDGES.build("openai", {"base_url": url, "model": "bench", "timeout": 30.0,
                                    "max_concurrency": concurrency}).plugin
    started = time.perf_counter()
    if mode == "pairwise":
        verdicts: list[Any] = compare(judge, [PairItem(f"question {i}", f"reply {i}", f"other {i}") for i in range(n)])
    else:
        verdicts = judge.score([JudgeItem(f"question {i}", f"reply {i}") for i in range(n)])
    return time.perf_counter() - started, verdicts


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=64, help="Judgments per round (pairs with --mode pairwise).")
    parser.add_argument("--mode", choices=("pointwise", "pairwise"), default="pointwise")
    parser.add_argument("--latency", type=float, default=0.2, help="Seconds the endpoint takes per request.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench-out/judge-concurrency.json"))
    args = parser.parse_args()
    levels = sorted(set(args.concurrency) | {1})

    endpoint = Endpoint(args.latency)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    judge_once(endpoint.url, max(levels), args.mode, 2)  # warm-up: imports, the first connections
    seconds: dict[int, list[float]] = {c: [] for c in levels}
    in_flight: dict[int, int] = {}
    requests: dict[int, int] = {}
    reference: list[Any] | None = None  # the first round's verdicts: every other round must equal them
    identical = True
    for _ in range(args.repeats):
        for c in levels:  # side by side: each repetition runs every level, so load drifts hit them alike
            endpoint.reset()
            took, got = judge_once(endpoint.url, c, args.mode, args.items)
            seconds[c].append(took)
            in_flight[c] = max(in_flight.get(c, 0), endpoint.max_in_flight)
            requests[c] = endpoint.requests
            reference = got if reference is None else reference
            identical = identical and got == reference
    endpoint.shutdown()
    endpoint.server_close()

    speedups = {c: [one / other for one, other in zip(seconds[1], seconds[c], strict=True)] for c in levels if c != 1}
    valid = sum(1 for v in reference or [] if v.valid)
    report = {
        "benchmark": "judge-concurrency", "date": date.today().isoformat(), "mode": args.mode, "items": args.items,
        "requests_per_round": requests[1], "latency_s": args.latency, "repeats": args.repeats,
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "per_concurrency": {str(c): {"seconds": seconds[c], "seconds_stats": spread(seconds[c]),
                                     "judgments_per_s": spread([args.items / s for s in seconds[c]]),
                                     "max_in_flight": in_flight[c]} for c in levels},
        "speedup_vs_1": {str(c): {"per_repeat": s, **spread(s)} for c, s in speedups.items()},
        "verdicts_identical": identical, "valid_verdicts": valid,
    }
    print(f"{args.items} {args.mode} judgments ({requests[1]} requests) per round, {args.latency:g} s a request, "
          f"{args.repeats} repetitions, {os.cpu_count()} CPUs")
    for c in levels:
        stats, rate = report["per_concurrency"][str(c)]["seconds_stats"], report["per_concurrency"][str(c)]
        line = (f"  concurrency {c:>3}: {stats['median']:7.3f} s (min {stats['min']:.3f}, max {stats['max']:.3f}), "
                f"{rate['judgments_per_s']['median']:6.1f} judgments/s, at most {in_flight[c]} in flight")
        if c != 1:
            s = spread(speedups[c])
            line += f", {s['median']:.1f}x (min {s['min']:.1f}, max {s['max']:.1f})"
        print(line)
    print(f"  verdicts identical at every concurrency: {identical} ({valid}/{args.items} valid)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
