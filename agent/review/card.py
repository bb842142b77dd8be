"""The model card of an approved adapter (README.md): what it is, what it was trained on and under, who
approved it and what they were shown. Written beside the adapter when it is activated and into every
`tether export adapter` folder. Reads the store only; the caller says whose signatures verified."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guardrails.checks import InvariantResult
from guardrails.constitution import ConstitutionError, parse_constitution
from guardrails.signoff import SignOff
from memory import Checkpoint, Run, Store

CardKind = Literal["adapter", "merged"]


@dataclass(frozen=True)
class CardInputs:
    """What the card is about: the checkpoint, its verified sign-off (or why there is none), and, in an
    export, what was written (the adapter as is, or merged into the base) and the verified LoRA config."""

    checkpoint: Checkpoint
    signed: SignOff | None
    problem: str | None = None
    kind: CardKind = "adapter"
    lora: Mapping[str, Any] | None = None


def model_card(store: Store, inputs: CardInputs) -> str:
    ck = inputs.checkpoint
    run = store.get_run(ck.run_id) if ck.run_id else None
    base = (run.base_model or {}) if run else {}
    sections = [
        _front_matter(base, inputs.kind),
        _summary(store, inputs, base),
        _approvals(inputs.signed),
        _evaluation((ck.metrics or {}).get("eval") or {}),
        _invariants(store, ck),
        _training(store, ck, run, inputs.lora),
        _use(base, inputs.kind),
    ]
    return "\n".join(s for s in sections if s)


def _front_matter(base: Mapping[str, Any], kind: CardKind) -> str:
    """Hugging Face card metadata; `base_model` only for a hub id (a local folder means nothing elsewhere)."""
    ref = str(base.get("ref") or "")
    hub_id = ref and not base.get("in_workspace") and not Path(ref).is_absolute() and ref.count("/") == 1
    lines = ["---", f"library_name: {'peft' if kind == 'adapter' else 'transformers'}"]
    if hub_id:
        lines.append(f"base_model: {ref}")
    lines += ["tags:", "- tether", "- dpo", "- lora", "---", ""]
    return "\n".join(lines)


def _summary(store: Store, inputs: CardInputs, base: Mapping[str, Any]) -> str:
    ck = inputs.checkpoint
    report = ck.invariant_report or {}
    constitution = report.get("constitution") or {}
    rounds = [r for r in (store.rounds(ck.run_id) if ck.run_id else []) if r.round <= ck.round]
    judges = sorted({(r.judge or {}).get("label") or (r.judge or {}).get("name") or "?" for r in rounds})
    what = (f"A LoRA adapter trained by tether (DPO, TRL + PEFT) in round {ck.round} of run {ck.run_id}."
            if inputs.kind == "adapter" else
            f"The base model with tether's LoRA adapter {ck.id} (DPO, TRL + PEFT; round {ck.round} of run "
            f"{ck.run_id}) merged into its weights (PEFT `merge_and_unload`).")
    signed = inputs.signed
    lines = [
        f"# {ck.id}", "", what, "",
        f"- checkpoint: `{ck.id}` (run `{ck.run_id}`, round {ck.round}, parent `{ck.parent}`)",
        f"- base model: `{base.get('ref')}` (files sha256 `{base.get('sha256')}`)",
        f"- adapter sha256: `{ck.sha256}` (adapter_config.json + adapter_model.safetensors)",
        f"- rounds: {len(rounds)}; judges: {', '.join(judges)}",
        f"- constitution: v{constitution.get('version')} (sha256 `{constitution.get('sha256')}`)",
        f"- approved by: {', '.join(signed.approved_by) if signed else inputs.problem or 'not approved'}",
        "",
    ]
    return "\n".join(lines)


def _approvals(signed: SignOff | None) -> str:
    """Every verified signature: who, what, when (the signed statement's time) and with which key."""
    if signed is None or not signed.signatures:
        return ""
    lines = [f"## Approval {signed.approval_id}", "",
             f"{len(signed.approved_by)} of {signed.required} required reviewer(s) approved; every signature "
             "below verified against the reviewer's registered key when this card was written.", "",
             "| reviewer | decision | signed at | key fingerprint | note | accepted targets not met |",
             "|---|---|---|---|---|---|"]
    for s in signed.signatures:
        accepted = ", ".join(s.get("accept_not_met") or []) or "-"
        lines.append(f"| {_cell(s.get('reviewer'))} | {_cell(s.get('decision'))} | {_cell(s.get('time'))} | "
                     f"`{_cell(s.get('fingerprint'))}` | {_cell(s.get('note') or '-')} | {_cell(accepted)} |")
    return "\n".join(lines) + "\n"


def _evaluation(evaluation: Mapping[str, Any]) -> str:
    """Held-out scores of the adapter against the checkpoint that was active when it was evaluated."""
    before, after = evaluation.get("active") or {}, evaluation.get("candidate") or {}
    lines = ["## Held-out evaluation", "",
             f"Greedy replies on {after.get('n', '?')} held-out prompts, scored by the world's verifiers (oracle) "
             "and the run's judge.", "",
             "| | active before | this adapter |", "|---|---|---|"]
    for metric in ("oracle", "judge"):
        if before.get(metric) is not None or after.get(metric) is not None:
            lines.append(f"| {metric} | {_num(before.get(metric))} | {_num(after.get(metric))} |")
        families = sorted(set(before.get(f"{metric}_by_family") or {}) | set(after.get(f"{metric}_by_family") or {}))
        for family in families:
            lines.append(f"| {metric}: {_cell(family)} | {_num((before.get(f'{metric}_by_family') or {}).get(family))}"
                         f" | {_num((after.get(f'{metric}_by_family') or {}).get(family))} |")
    return "\n".join(lines) + "\n"


def _invariants(store: Store, ck: Checkpoint) -> str:
    """The invariant verdict guardrails recorded, and the digest of each invariant it was checked against."""
    report = ck.invariant_report or {}
    lines = ["## Invariants", ""]
    lines += [f"- {InvariantResult.from_json(r).line()}" for r in report.get("results", []) if isinstance(r, dict)]
    digests = invariant_digests(store, (report.get("constitution") or {}).get("version"))
    if digests:
        lines += ["", "| invariant | sha256 of its definition |", "|---|---|"]
        lines += [f"| {_cell(name)} | `{digest}` |" for name, digest in sorted(digests.items())]
    return "\n".join(lines) + "\n"


def invariant_digests(store: Store, version: Any) -> dict[str, str]:
    """The digest of each invariant (and of their definitions) of constitution `version`, as runs pin them."""
    recorded = store.get_constitution_version(version) if isinstance(version, int) else None
    if recorded is None:
        return {}
    try:
        return parse_constitution(recorded.content, f"constitution v{version}").invariant_digests()
    except ConstitutionError:
        return {}  # a version that no longer parses: the card says nothing rather than something wrong


def _training(store: Store, ck: Checkpoint, run: Run | None, lora: Mapping[str, Any] | None) -> str:
    train = (ck.metrics or {}).get("train") or {}
    lines = ["## Training", ""]
    if lora:
        lines.append(f"- LoRA: r={lora.get('r')}, alpha={lora.get('lora_alpha')}, dropout={lora.get('lora_dropout')}, "
                     f"target modules {', '.join(map(str, lora.get('target_modules') or []))} "
                     "(from the verified adapter_config.json)")
    shown = {k: train[k] for k in ("loss", "train_loss", "rewards/accuracies", "rewards/margins", "epoch")
             if isinstance(train.get(k), int | float)}
    if shown:
        lines.append("- final training metrics: " + ", ".join(f"{k} {_num(v)}" for k, v in shown.items()))
    if run is not None:
        changed = _config_changed_after(store, ck)
        if changed:
            lines.append("- the run's settings changed after this round was trained (`tether resume --config`): "
                         + "; ".join(changed) + ". The settings below are the run's current ones.")
        lines += [f"- run config sha256 `{run.config_sha256}`; training section:", "", "```json",
                  json.dumps(run.config.get("training") or {}, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def _config_changed_after(store: Store, ck: Checkpoint) -> list[str]:
    """The setting changes audited for the run after the checkpoint was trained: the card must not pass off
    today's training settings as the ones this adapter was trained with."""
    entries = store.audit_entries(subject=ck.run_id) if ck.run_id else []
    trained = next((e.seq for e in store.audit_entries(subject=ck.id) if e.action == "checkpoint.train"), None)
    return [str(c) for e in entries if e.action == "run.config" and trained is not None and e.seq > trained
            for c in e.details.get("changes") or []]


def _use(base: Mapping[str, Any], kind: CardKind) -> str:
    if kind == "adapter":
        code = ["from peft import PeftModel", "from transformers import AutoModelForCausalLM",
                'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), "this/folder")']
        note = ["", f"BASE is the base model above (`{base.get('ref')}`), with exactly the files of its digest."]
    else:
        code, note = ["from transformers import AutoModelForCausalLM",
                      'model = AutoModelForCausalLM.from_pretrained("this/folder")'], []
    return "\n".join(["## Use", "", "```python", *code, "```", *note]) + "\n"


def _num(value: Any) -> str:
    return "-" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.3f}"


def _cell(value: Any) -> str:
    """A table cell: stored text (a note, a name) cannot break the table or add markup lines."""
    return str(value).replace("|", "\\|").replace("\n", " ")
