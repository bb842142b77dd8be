"""`tether judge audit`: audit a judge for bias before trusting it (a read-only report).

Exit codes: 0 when the audit completed, whatever it found (it is a report: read the verdict);
2 for bad usage (unknown judge, invalid config or constitution, no workspace, a model that cannot
be loaded), with nothing written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from agent.cli.common import err_console, fail, out_console, print_json, print_table, say, workspace
from agent.config import MAX_SEED, ConfigError, load_config
from guardrails.constitution import ConstitutionError, load_constitution
from tools.judges import JUDGES, BackendPolicy
from tools.judges.audit import DEFAULT_PROBES, AuditReport, Measure, Thresholds, audit_judge
from tools.registry import PluginSettingsError, UnknownPluginError
from tools.worlds import WORLDS, AuditProbeSource, WorldError

judge_app = typer.Typer(help="Inspect judges: audit one for bias before trusting it.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@judge_app.command("audit")
def judge_audit(
    ctx: typer.Context,
    judge: Annotated[str, typer.Option("--judge", help="Judge plug-in to audit (tools/judges).")],
    config: Annotated[Path | None, typer.Option("--config", help="Config file (default: the workspace's).")] = None,
    probes: Annotated[int, typer.Option("--probes", min=1, help="Held-out probe prompts, balanced across "
                                        "families.")] = DEFAULT_PROBES,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=MAX_SEED,
                                             help="Probe draw seed (default: the config's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bias audit of a judge on held-out probes of the configured world (one with reference answers in
    several styles, e.g. the default world): position bias, length bias, self-preference, agreement with the
    oracle, invalid judgments; each flagged against its threshold, then an overall verdict. Settings
    come from the config's `judge.settings` when `judge.name` is this judge (else none). Writes
    nothing; exits 0 whenever the audit completes."""
    started = time.perf_counter()
    JUDGES.check(judge)
    ws = workspace(ctx)
    ws.require()
    config_path = config or ws.config_path
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        fail(f"invalid config {err.source}: " + "; ".join(err.problems))
    settings = dict(cfg.judge.settings) if cfg.judge.name == judge else {}
    try:
        constitution = load_constitution(ws.constitution_path)
    except ConstitutionError as err:
        fail(f"invalid constitution: {err}")
    try:
        world = WORLDS.build(cfg.world.name, cfg.world.settings, seed=cfg.seed, root=ws.home,
                             inputs=cfg.inputs.confined_to(ws.home)).plugin
    except (WorldError, UnknownPluginError, PluginSettingsError) as err:
        fail(f"{config_path}: world '{cfg.world.name}': {err}")
    if not isinstance(world, AuditProbeSource):
        fail(f"world '{cfg.world.name}' has no judge-audit probes (reference answers in several styles for each "
             "held-out prompt): `tether judge audit` needs a world that has them, e.g. the default world")

    from agent.run.runner import ensure_model  # heavy (torch, langgraph): after usage checks
    from policies.generation import make_backend
    from policies.threads import apply_threads
    from tether_types import SamplingSpec

    def load_backend() -> Any:
        try:
            apply_threads(cfg.model.threads)
            return make_backend(cfg.generation.backend, model_ref, device=cfg.model.device, dtype=cfg.model.dtype,
                                batch_size=cfg.generation.batch_size,
                                **({"batching": cfg.generation.batching}
                                   if cfg.generation.backend == "transformers" else {}))
        except (OSError, ValueError, ImportError) as err:
            fail(f"cannot load model {model_ref}: {err}")

    model_ref = cfg.model.base  # a folder or hub id; ensure_model (below) says where the world's model lies
    policy = LazyPolicy(load_backend)
    built: Any = None
    timings: dict[str, float] = {}
    try:
        mark = time.perf_counter()
        try:  # before any model work, so bad settings fail fast; the policy loads on first use
            built = JUDGES.build(judge, settings, constitution=constitution, policy=policy)
        except (PluginSettingsError, ValueError, OSError) as err:  # e.g. an `hf` judge's model is missing
            fail(f"{config_path}: {err}")
        model_ref = ensure_model(ws, cfg, say, progress=not as_json)
        try:
            probe_set = world.audit_probes(seed=cfg.seed if seed is None else seed, n=probes)
        except WorldError as err:
            fail(f"{config_path}: world '{cfg.world.name}': {err}")
        thresholds = Thresholds(invalid_rate=float(getattr(cfg.controller, "max_invalid_share", 0.2)))
        with err_console.status(f"auditing judge '{judge}': loading {model_ref}") as status:
            policy.load()
            timings["load"] = time.perf_counter() - mark

            mark = time.perf_counter()
            status.update(f"auditing judge '{judge}': the policy answers {len(probe_set)} probes (greedy)")
            spec = SamplingSpec(n=1, max_new_tokens=cfg.evaluation.max_new_tokens, do_sample=False,
                                temperature=0.0, seed=cfg.seed)
            answers = dict(zip((p.id for p in probe_set.prompts),
                               policy.generate([p.text for p in probe_set.prompts], spec), strict=True))
            timings["policy"] = time.perf_counter() - mark

            mark = time.perf_counter()
            report = audit_judge(built.plugin, probe_set, answers, world.oracle if world.has_oracle else None,
                                 thresholds=thresholds, name=judge,
                                 progress=lambda m: status.update(f"auditing judge '{judge}': {m}"))
            timings["judge"] = time.perf_counter() - mark
    finally:
        if built is not None and hasattr(built.plugin, "close"):
            built.plugin.close()  # an `hf` judge holds a model of its own
        policy.close()
    timings["total"] = time.perf_counter() - started
    _show(report, built.spec(), model_ref, timings, as_json)


class LazyPolicy:
    """The configured base model as a `PolicyHandle`, loaded on first use (so a judge can be built,
    and its settings checked, before any model work)."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._policy: BackendPolicy | None = None

    def load(self) -> BackendPolicy:
        if self._policy is None:
            self._policy = BackendPolicy(self._load())
        return self._policy

    def generate(self, prompts: Sequence[str], spec: Any) -> list[str]:
        return self.load().generate(prompts, spec)

    def close(self) -> None:
        if self._policy is not None:
            self._policy.backend.close()
            self._policy = None


def _show(report: AuditReport, spec: dict[str, Any], model_ref: str, timings: dict[str, float],
          as_json: bool) -> None:
    if as_json:
        print_json({**report.to_json(), "judge": spec, "model": model_ref,
                    "seconds": {k: round(v, 3) for k, v in timings.items()}})
        return
    families = ", ".join(f"{k} {v}" for k, v in report.families.items())
    settings = f" {spec['settings']}" if spec["settings"] else ""
    print_table(f"judge audit: {report.judge}{settings} — {report.probes} held-out probes "
                f"({families}), seed {report.seed}",
                ["measure", "value", "flags if", "flag", "n", "note"],
                [[m.name, _fmt(m.value), f"{'>' if m.direction == 'max' else '<'} {m.threshold:g}", _flag(m),
                  m.n, m.note or m.description] for m in report.measures])
    if report.verdict == "fail":
        out_console.print(f"verdict: [bold red]FAIL[/] — flagged: {', '.join(report.flagged)}")
    else:
        out_console.print("verdict: [bold green]PASS[/]"
                          + (f" (not measured: {', '.join(report.unmeasured)})" if report.unmeasured else ""))
    say(f"audit took {timings['total']:.1f}s (load {timings['load']:.1f}s, policy {timings['policy']:.1f}s, "
        f"judge {timings['judge']:.1f}s); nothing was written")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _flag(m: Measure) -> str | Text:
    if m.flagged is None:
        return "n/a"
    return Text("FLAG", style="bold red") if m.flagged else Text("ok", style="green")
