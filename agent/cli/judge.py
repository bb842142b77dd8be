"""`tether judge audit`: audit a judge (or the invariant detectors) before trusting it.

On the world's own probes (a world with reference answers in several styles, e.g. the default world), or on
labelled probes a user brings (`--probes FILE`: JSONL, CSV or Parquet; pairwise, RewardBench-style
prompt/chosen/rejected, pointwise, or violation probes; `--probes bundled` is tether's own labelled set).
Each judge audit is recorded in the audit log, pinned to the judge's configuration and the world
(agent/run/judge_trust.py): `judge.require_audit` makes runs refuse a judge without a passing one signed by a
reviewer (`--by NAME`, whose key is loaded as `tether approve --by` loads it; guardrails/judge_audits.py).

Exit codes: 0 when the audit completed, whatever it found (read the verdict), or 1 with `--strict` when a
measure is flagged; 2 for bad usage (unknown judge, invalid config, constitution or probe file, no workspace,
a model that cannot be loaded), with nothing written; 1, before any audit work and with nothing written, when
`--by` names someone who is not a registered reviewer with that key here.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from agent.cli.common import (
    EXIT_CHECK_FAILED,
    err_console,
    fail,
    open_store,
    out_console,
    print_json,
    print_table,
    say,
    signer,
    workspace,
)
from agent.config import MAX_SEED, ConfigError, TetherConfig, load_config
from guardrails import judge_audits, keys
from guardrails.constitution import Constitution, ConstitutionError, load_constitution
from tools.judges import JUDGES, BackendPolicy
from tools.judges.audit import DEFAULT_PROBES, AuditReport, Measure, Thresholds, audit_judge
from tools.judges.labelled import LabelledSet, bundled_probes, read_labelled
from tools.registry import PluginSettingsError, UnknownPluginError
from tools.worlds import WORLDS, AuditProbeSource, WorldError

judge_app = typer.Typer(help="Inspect judges: audit one for bias and calibration before trusting it.",
                        no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
BUNDLED = "bundled"


@judge_app.command("audit")
def judge_audit(
    ctx: typer.Context,
    judge: Annotated[str | None, typer.Option("--judge", help="Judge plug-in to audit (tools/judges).")] = None,
    detectors: Annotated[bool, typer.Option(
        "--detectors", help="Audit the constitution's invariant detectors on violation probes instead (precision, "
        "recall, false-positive rate per invariant).")] = False,
    probes: Annotated[str | None, typer.Option(
        "--probes", help="Labelled probe file (JSONL, CSV or Parquet), or 'bundled' for tether's own labelled set; "
        "default: the world's own probes (a judge) or the bundled violation probes (--detectors).")] = None,
    count: Annotated[int, typer.Option("--count", min=1, help="How many of the world's held-out probe prompts, "
                                       "balanced across families (without --probes).")] = DEFAULT_PROBES,
    config: Annotated[Path | None, typer.Option("--config", help="Config file (default: the workspace's).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=MAX_SEED,
                                             help="Probe draw seed (default: the config's).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any measure is flagged.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for audit.json and the reliability diagram "
                                             "(reliability.png), when calibration was measured.")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Sign the audit as this registered reviewer (key from $TETHER_KEYS_DIR, as for `approve`): "
        "only a signed audit satisfies judge.require_audit.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit a judge: position bias (both orders), length bias (padded copies), self-preference, agreement
    with the oracle or the labels (per category), invalid judgments and calibration (expected calibration error
    and a reliability diagram); each flagged against its threshold, then an overall verdict. Settings come from
    the config's judge pool when it names this judge (else none). The audit is recorded in the audit log, signed
    with --by; unsigned, it cannot satisfy judge.require_audit.

    Examples:
      tether judge audit --judge rules --by alice              # on the world's own probes, signed by alice
      tether judge audit --judge rules --probes bundled --out audit/
      tether judge audit --judge openai --probes prefs.parquet --strict
      tether judge audit --detectors                           # the keyword detectors' recall"""
    started = time.perf_counter()
    if (judge is None) == (not detectors):
        fail("name a judge (--judge NAME) or --detectors, not both",
             hint="tether judge audit --judge rules, or tether judge audit --detectors")
    if detectors and by is not None:
        fail("--by signs a judge audit; a detector audit is a report, not recorded, so there is nothing to sign",
             hint="drop --by, or audit a judge: tether judge audit --judge NAME --by REVIEWER")
    ws = workspace(ctx)
    ws.require()
    config_path = config or ws.config_path
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        fail(f"invalid config {err.source}: " + "; ".join(err.problems))
    try:
        constitution = load_constitution(ws.constitution_path)
    except ConstitutionError as err:
        fail(f"invalid constitution: {err}")
    probes, count = _legacy_count(probes, count)
    labelled = _labelled(probes, "violation" if detectors else None, ws.home, cfg.seed if seed is None else seed)
    if detectors:
        _audit_detectors(constitution, labelled, started, strict, out, as_json)
        return
    assert judge is not None
    JUDGES.check(judge)
    key = None if by is None else _reviewer_key(ctx, by)  # before the audit's minutes, so a refusal costs none
    report, spec, model_ref, timings, extra = _audit_one_judge(
        ctx, judge, cfg, config_path, constitution, labelled, count, seed)
    entry = _record(ctx, cfg, judge, spec, report, labelled, key)
    timings["total"] = time.perf_counter() - started
    _write_out(out, {**report.to_json(), **extra.get("json", {})}, extra.get("plot"))
    signed = {"audit_entry": entry, "signed_by": by}
    _show(report, spec, model_ref, timings, as_json, source=_source_label(labelled),
          extra_json={**extra.get("json", {}), **signed})
    if key is None:
        say(f"recorded unsigned as audit entry {entry}: it cannot satisfy judge.require_audit; a registered "
            f"reviewer signs one with `tether judge audit --judge {judge} --by NAME`")
    else:
        say(f"recorded as audit entry {entry}, signed by {by} (key {key.fingerprint[:16]})")
    if strict and report.verdict == "fail":
        raise typer.Exit(EXIT_CHECK_FAILED)


def _legacy_count(probes: str | None, count: int) -> tuple[str | None, int]:
    """`--probes N` counted world probes before it named a file: a bare number that is no file still works."""
    if probes is not None and probes.isdigit() and not Path(probes).exists():
        say(f"deprecated: --probes {probes} (a count) is now --count {probes}; --probes names a labelled file")
        return None, int(probes)
    return probes, count


def _labelled(probes: str | None, kind: str | None, home: Path, seed: int) -> LabelledSet | None:
    """The labelled set `--probes` names (relative to the shell's folder), or the bundled one for `kind`."""
    if probes is None and kind is None:
        return None
    if probes is None or probes == BUNDLED:
        path = bundled_probes("violation" if kind == "violation" else "pairwise")
    else:
        path = Path(probes).expanduser().resolve()
        if not path.is_file():
            fail(f"--probes {probes}: no such file ({path})",
                 hint="give a JSONL, CSV or Parquet file of labelled probes, or --probes bundled")
    labelled = read_labelled(path, slot_seed=seed)  # LabelledProbeError: exit 2 with the row and column
    if kind == "violation" and labelled.kind != "violation":
        fail(f"--detectors needs violation probes (prompt, response, violates), and {path} holds {labelled.kind} "
             "probes", hint="--probes bundled, or a file with a `violates` column")
    if kind is None and labelled.kind == "violation":
        fail(f"{path} holds violation probes, which audit detectors, not a judge", hint="add --detectors")
    return labelled


def _audit_detectors(constitution: Constitution, labelled: LabelledSet | None, started: float, strict: bool,
                     out: Path | None, as_json: bool) -> None:
    from tools.judges.detector_audit import RulesDetector, audit_detector

    assert labelled is not None
    audit = audit_detector(RulesDetector(constitution), labelled, name="keyword detectors")
    _write_out(out, audit.to_json(), None)
    timings = {"total": time.perf_counter() - started, "load": 0.0, "policy": 0.0, "judge": 0.0}
    _show(audit.report, {"name": "keyword detectors", "settings": {}}, "", timings, as_json,
          source=_source_label(labelled), extra_json={"details": dict(audit.details)})
    if strict and audit.report.verdict == "fail":
        raise typer.Exit(EXIT_CHECK_FAILED)


def _audit_one_judge(ctx: typer.Context, judge: str, cfg: TetherConfig, config_path: Path,
                     constitution: Constitution, labelled: LabelledSet | None, count: int, seed: int | None,
                     ) -> tuple[AuditReport, dict[str, Any], str, dict[str, float], dict[str, Any]]:
    """Build the judge as the config's pool would, then audit it on the labelled set or the world's probes."""
    settings = next((dict(s.settings) for s in cfg.judge.slots() if s.name == judge), {})
    world: Any = None
    if labelled is None:
        try:
            world = WORLDS.build(cfg.world.name, cfg.world.settings, seed=cfg.seed, root=workspace(ctx).home,
                                 inputs=cfg.inputs.confined_to(workspace(ctx).home)).plugin
        except (WorldError, UnknownPluginError, PluginSettingsError) as err:
            fail(f"{config_path}: world '{cfg.world.name}': {err}")
        if not isinstance(world, AuditProbeSource):
            fail(f"world '{cfg.world.name}' has no judge-audit probes of its own (reference answers in several "
                 "styles for each held-out prompt)",
                 hint="audit on labelled probes: --probes FILE (yours) or --probes bundled (tether's own)")

    from agent.run.runner import ensure_model  # heavy (torch, langgraph): after usage checks
    from agent.run.services import backend_settings
    from policies.generation import make_backend
    from policies.progress import wanted as bars_wanted
    from policies.threads import apply_threads
    from tether_types import SamplingSpec

    def load_backend() -> Any:
        try:
            apply_threads(cfg.model.threads)
            return make_backend(cfg.generation.backend, model_ref, **backend_settings(cfg))
        except (OSError, ValueError, ImportError) as err:
            fail(f"cannot load model {model_ref}: {err}")

    model_ref = cfg.model.base  # a folder or hub id; ensure_model (below) says where the world's model lies
    policy = LazyPolicy(load_backend)
    built: Any = None
    timings: dict[str, float] = {"load": 0.0, "policy": 0.0, "judge": 0.0}
    extra: dict[str, Any] = {}
    try:
        mark = time.perf_counter()
        try:  # before any model work, so bad settings fail fast; the policy loads on first use
            built = JUDGES.build(judge, settings, constitution=constitution, policy=policy)
        except (PluginSettingsError, ValueError, OSError) as err:  # e.g. an `hf` judge's model is missing
            fail(f"{config_path}: {err}")
        thresholds = Thresholds(invalid_rate=float(getattr(cfg.controller, "max_invalid_share", 0.2)))
        if labelled is not None:
            from tools.judges.labelled_audit import audit_labelled

            with err_console.status(f"auditing judge '{judge}' on {len(labelled)} labelled probes") as status:
                audit = audit_labelled(built.plugin, labelled, seed=cfg.seed if seed is None else seed, name=judge,
                                       progress=lambda m: status.update(f"auditing judge '{judge}': {m}"))
            timings["judge"] = time.perf_counter() - mark
            extra = {"json": {"source": audit.source, "sha256": audit.sha256,
                              "calibration": None if audit.calibration is None else audit.calibration.to_json()},
                     "plot": audit.plot}
            return audit.report, built.spec(), model_ref, timings, extra
        model_ref = ensure_model(workspace(ctx), cfg, say, progress=bars_wanted(None))
        try:
            probe_set = world.audit_probes(seed=cfg.seed if seed is None else seed, n=count)
        except WorldError as err:
            fail(f"{config_path}: world '{cfg.world.name}': {err}")
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
        return report, built.spec(), model_ref, timings, extra
    finally:
        if built is not None and hasattr(built.plugin, "close"):
            built.plugin.close()  # an `hf` judge holds a model of its own
        policy.close()


def keyword_detector_note(constitution: Constitution) -> str | None:
    """What `validate` says of invariants checked by keyword lists: their measured recall on tether's bundled
    violation probes (paraphrase and vocabulary beyond the tiny world), so nobody mistakes them for a classifier."""
    from tools.judges.detector_audit import RulesDetector, audit_detector

    keyword = [inv.id for inv in constitution.invariants if getattr(inv, "detector", "rules") == "rules"]
    if not keyword:
        return None
    labelled = read_labelled(bundled_probes("violation"))
    report = audit_detector(RulesDetector(constitution), labelled, name="keyword detectors").report
    parts = []
    for inv in keyword:
        recall = next((m for m in report.measures if m.name == f"recall[invariant:{inv}]"), None)
        parts.append(f"{inv} recall {'n/a' if recall is None or recall.value is None else f'{recall.value:.2f}'}")
    fpr = report.measure("false_positive_rate").value
    return (f"invariants checked by keyword lists (written for the default world): {', '.join(parts)}, false-positive "
            f"rate {'n/a' if fpr is None else f'{fpr:.2f}'} on tether's {len(labelled)} bundled violation probes; "
            "audit them on yours with `tether judge audit --detectors --probes FILE`")


def _source_label(labelled: LabelledSet | None) -> str:
    return "the world's held-out probes" if labelled is None else f"{labelled.source} ({len(labelled)} probes)"


def _reviewer_key(ctx: typer.Context, by: str) -> keys.Signer:
    """`by`'s key, loaded as `tether approve --by` loads it, and checked against the verified reviewer registry;
    a refusal (exit 1; 2 for a malformed name) writes nothing."""
    _, store = open_store(ctx, readonly=True)
    with store:
        key = signer(store, by)
        judge_audits.require_reviewer(store, key)
    return key


def _record(ctx: typer.Context, cfg: TetherConfig, judge: str, spec: dict[str, Any], report: AuditReport,
            labelled: LabelledSet | None, key: keys.Signer | None) -> int:
    """The audit into the audit log, pinned to the judge's configuration and the world (judge_trust.py), signed
    by `key` when given; its audit entry's seq."""
    from agent.run.judge_trust import record_audit

    source = ({"kind": "world", "probes": report.probes, "seed": report.seed} if labelled is None else
              {"kind": "labelled", "file": Path(labelled.source).name, "sha256": labelled.sha256,
               "probes": len(labelled)})
    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = "cli"
    _, store = open_store(ctx)
    with store:
        return record_audit(store, actor or "cli", cfg, judge, spec.get("settings", {}), report, source, key).seq


def _write_out(out: Path | None, doc: dict[str, Any], plot: Callable[[Path], Path | None] | None) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if plot is not None and plot(out / "reliability.png") is not None:
        say(f"reliability diagram: {out / 'reliability.png'}")
    say(f"audit: {out / 'audit.json'}")


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
          as_json: bool, *, source: str, extra_json: dict[str, Any] | None = None) -> None:
    if as_json:
        print_json({**report.to_json(), **(extra_json or {}), "judge": spec, "model": model_ref, "source": source,
                    "seconds": {k: round(v, 3) for k, v in timings.items()}})
        return
    families = ", ".join(f"{k} {v}" for k, v in report.families.items())
    settings = f" {spec['settings']}" if spec["settings"] else ""
    print_table(f"judge audit: {report.judge}{settings} — {report.probes} probes from {source} "
                f"({families}), seed {report.seed}",
                ["measure", "value", "flags if", "flag", "n", "note"],
                [[m.name, _fmt(m.value), f"{'>' if m.direction == 'max' else '<'} {m.threshold:g}", _flag(m),
                  m.n, m.note or m.description] for m in report.measures])
    if report.verdict == "fail":
        # escaped: a category's measure is `accuracy[arithmetic]`, which rich would read as a markup tag
        out_console.print(f"verdict: [bold red]FAIL[/] — flagged: {escape(', '.join(report.flagged))}")
    else:
        out_console.print("verdict: [bold green]PASS[/]"
                          + (f" (not measured: {escape(', '.join(report.unmeasured))})" if report.unmeasured else ""))
    say(f"audit took {timings['total']:.1f}s (load {timings['load']:.1f}s, policy {timings['policy']:.1f}s, "
        f"judge {timings['judge']:.1f}s)")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _flag(m: Measure) -> str | Text:
    if m.flagged is None:
        return "n/a"
    return Text("FLAG", style="bold red") if m.flagged else Text("ok", style="green")
