"""Run configuration: one flat pydantic model per component, every field documented.

`extra="forbid"` and strict types make typos and wrong types errors, numbers are finite and bounded
(no `.inf`, `.nan` or a count of 1e12 reaches a run), and `load_config` reports every error of a file
at once (the `tether validate` contract). The file is read with guardrails.safe_yaml's limits. A world's old
spellings (tools/worlds/base.py `config_upgrade`) read as the new ones, in a file and in a stored run's
config alike; `old_spellings` says which a document holds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from agent.interventions import ControllerConfig  # the controller's settings with each plug-in's section
from agent.sections.base import MAX_NEW_TOKENS, MAX_PROMPTS, MAX_ROUNDS, MAX_SEED, _Section
from agent.sections.controller import AdvisorConfig  # noqa: F401  (re-exported: the controller's settings)
from agent.sections.generation import GenerationConfig, ServerConfig  # noqa: F401  (re-exported: the generation section)
from agent.sections.inputs import InputsConfig  # the inputs section (guardrails/inputs.py), re-exported as config
from agent.sections.judge import AUDIT_METRICS, JudgeConfig, JudgeSpecConfig  # noqa: F401  (re-exported: the judge section)
from agent.sections.pairs import PairsConfig, PairStrategyConfig, default_pair_pool  # noqa: F401  (re-exported: the pairs section)
from agent.sections.paths import anchored_model, anchored_world, names_files_in
from agent.sections.training import TrainingConfig  # the training section, re-exported as config
from guardrails.inputs import InputRefused, confine, key_folders
from guardrails.safe_yaml import YamlRefused, read_yaml
from tether_types import EXIT_USAGE, TetherError
from tools.worlds import DEFAULT_WORLD, upgrade_config

WORLD_MODEL = "world"  # model.base: the model the world builds (its settings say how)


class ModelConfig(_Section):
    base: str = Field(
        WORLD_MODEL,
        description="Base causal LM: 'world' (the model the world builds, into the workspace on first use, as "
        "world.settings say; the default world's embedded model), a local directory, or a Hugging Face hub id "
        "already in the local cache.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the policy runs.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype when loading the base model."
    )
    chat_template_fallback: Literal["none", "plain"] = Field(
        "none",
        description="When the tokenizer has no chat template: none = refuse to start (pre-flight error); plain = "
        "feed prompts and answers as plain text.",
    )
    threads: Literal["auto"] | int = Field(
        "auto",
        description="CPU threads torch uses in this process (generation and in-process training), 1 to 1024; "
        "auto = the cores this process may use minus the current load, at least 1, chosen when the run "
        "starts or resumes (policies/threads.py).",
    )

    @field_validator("threads")
    @classmethod
    def _thread_count(cls, value: Literal["auto"] | int) -> Literal["auto"] | int:
        if isinstance(value, int) and not 1 <= value <= 1024:
            raise ValueError(f"threads must be 'auto' or 1 to 1024, got {value}")
        return value


class RegenerateConfig(_Section):
    """Self-prompting (the `regenerate_prompts` intervention)."""

    count: int = Field(
        32, ge=1, le=MAX_PROMPTS,
        description=f"New prompts kept per regeneration, at most `candidates` and {MAX_PROMPTS}.",
    )
    candidates: int = Field(
        128, ge=1, le=MAX_PROMPTS,
        description=f"Prompts written before deduplication and filtering, at most {MAX_PROMPTS}.",
    )
    shots: int = Field(3, ge=1, le=8, description="Few-shot example prompts shown to the writer.")
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Writer sampling temperature.")
    max_new_tokens: int = Field(
        32, ge=1, le=MAX_NEW_TOKENS,
        description=f"Cap on the tokens the writer generates for one prompt (a prompt is one line; the writer's "
        f"request, its examples and this fit the writer's context), at most {MAX_NEW_TOKENS}.",
    )
    max_similarity: float = Field(
        0.9, gt=0.0, le=1.0,
        description="A written prompt this similar (MiniLM cosine) to any prompt used so far, any "
        "held-out prompt or another kept one is dropped.",
    )
    writer_model: str | None = Field(
        None, description="A separate local model that writes the prompts; null = the policy itself "
        "(with its active adapter).",
    )

    @model_validator(mode="after")
    def _keeps_at_most_written(self) -> RegenerateConfig:
        if self.count > self.candidates:
            raise ValueError(f"count {self.count} is more than candidates {self.candidates}: a regeneration "
                             "keeps at most the prompts it writes")
        return self


class AdversarialConfig(_Section):
    """The red-team curriculum (the `add_adversarial` intervention)."""

    count: int = Field(
        24, ge=1, le=MAX_PROMPTS,
        description=f"Adversarial prompts added per curriculum step, at most {MAX_PROMPTS}.",
    )
    failure_score: float = Field(
        0.5, ge=0.0, le=1.0,
        description="A prompt whose mean judge score (training rounds) or held-out verifier score "
        "is below this counts as a failure to target.",
    )
    lookback: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description=f"Rounds of training samples searched for failures, at most {MAX_ROUNDS}.",
    )


class PromptsConfig(_Section):
    generator: str = Field("pool", description="Prompt generator plug-in (tools/prompts).")
    per_round: int = Field(
        64, ge=1, le=MAX_PROMPTS, description=f"Training prompts drawn per round, at most {MAX_PROMPTS}."
    )
    heldout: int = Field(
        48, ge=1, le=MAX_PROMPTS,
        description=f"Held-out prompts used to evaluate candidates, at most {MAX_PROMPTS}: split into validation "
        "and test (evaluation.validation_fraction).",
    )
    pool_size: int | None = Field(
        None, ge=1, le=1_000_000, description="Cap the training pool to this many prompts, at most "
        "1000000 (null = the whole train split); a small pool saturates quickly.",
    )
    new_share: float = Field(
        0.5, ge=0.0, le=1.0,
        description="At most this share of a round's prompts comes from regenerated and adversarial "
        "prompts not yet used; the rest is drawn from the pool.",
    )
    regenerate: RegenerateConfig = RegenerateConfig()
    adversarial: AdversarialConfig = AdversarialConfig()


class EvaluationConfig(_Section):
    max_new_tokens: int = Field(
        48, ge=1, le=MAX_NEW_TOKENS,
        description=f"Greedy decode cap on held-out prompts, at most {MAX_NEW_TOKENS}.",
    )
    samples: int = Field(
        0, ge=0, le=64,
        description="K replies sampled per held-out prompt (generation's temperature and top_p) besides the "
        "greedy one, 0 to 64; > 0 adds per-family pass@K (any of the K gets full marks from the verifier) and "
        "the judge's score spread over them to each evaluation (agent/run/headroom.py). 0 = off: an evaluation "
        "decodes greedily only.",
    )
    validation_fraction: float = Field(
        0.5, gt=0.0, lt=1.0,
        description="Share of the evaluated held-out prompts (prompts.heldout) in the validation split, in (0, 1): "
        "split by the seed, alike in every family (agent/run/splits.py). Only validation scores reach the "
        "controller (its plateau, regression and stop rules, interventions, the advisor); the test split is only "
        "reported (tether show, report, the gate's summary), so a reported score is held out from the decisions.",
    )


NotifyEvent = Literal["gate", "stopped", "failed", "invariant_blocked"]


class NotifyConfig(_Section):
    """Who to tell when a run needs a person (agent/run/notify.py)."""

    command: str | None = Field(
        None, description="A command run by the shell (/bin/sh -c) on each event, with the notice as JSON on stdin "
        "and TETHER_EVENT, TETHER_RUN_ID, TETHER_ROUND, TETHER_TITLE, TETHER_REVIEW, TETHER_HOME and TETHER_LINK "
        "in its environment.",
    )
    urls: list[str] = Field(
        default_factory=list, max_length=20,
        description="Notification URLs in apprise syntax (json://, mailto://, slack://, ntfy://, ...).",
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: ["gate", "stopped", "failed", "invariant_blocked"],
        description="Events that notify: a run waits at a gate, stops, fails, or an invariant blocks a candidate.",
    )
    timeout: float = Field(10.0, gt=0.0, le=300.0, description="Seconds the command may take, at most 300.")
    desk_url: str | None = Field(
        None, pattern=r"^https?://[^\s]+$",
        description="Where people open the desk (`tether ui`), e.g. http://127.0.0.1:8765 or your tunnel's "
        "address: each notice then links the page to act on (the approval, the run).",
    )


class ApprovalsConfig(_Section):
    required: int = Field(
        1, ge=1, le=10,
        description="Distinct registered reviewers whose signed approvals a checkpoint or constitution change "
        "needs (at most 10); the proposer of a constitution change is never one of them. Fixed for a run "
        "once it starts.",
    )
    new_constitution_required: int | None = Field(
        None, ge=1, le=10,
        description="Distinct registered reviewers, the proposer never one of them, whose signed approvals a new "
        "constitution lineage (`tether constitution new`: invariants of its own) needs. None: every registered "
        "reviewer. Never fewer than `required`, nor fewer than 2 while 2 or more reviewers are registered; with "
        "one reviewer, that one. Read when the lineage is proposed and fixed in its audited request.",
    )
    hold_for_amendment: bool = Field(
        True,
        description="A run that proposed a constitution amendment waits for the reviewers' decision before its "
        "next round, as a candidate waits at the gate (approved: the next round uses it; rejected: the run goes "
        "on). False: it trains on under the constitution in force while the proposal waits.",
    )

    @model_validator(mode="after")
    def _lineage_needs_at_least_an_amendments_signatures(self) -> ApprovalsConfig:
        if self.new_constitution_required is not None and self.new_constitution_required < self.required:
            raise ValueError(f"new_constitution_required ({self.new_constitution_required}) is below required "
                             f"({self.required}): a new constitution lineage needs at least as many signatures "
                             "as an amendment")
        return self


class TrackingConfig(_Section):
    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="wandb mode; runs are written under the workspace's wandb/."
    )
    project: str = Field("tether", description="wandb project name.")


class WorldConfig(_Section):
    """Where a run's prompts, verifiers and invariant probes come from. `tether validate` and the run's
    pre-flight build the world: unknown names and settings, unreadable data files and overlapping
    train / held-out prompts are errors. Fixed for a run once it starts."""

    name: str = Field(
        DEFAULT_WORLD, description="World plug-in (tools/worlds, `tether plugins`): the default is the embedded "
        "world, which builds the model model.base 'world' names; 'data' takes your own prompt files.",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Keyword settings passed to the world's constructor, checked by it (paths "
        "relative to the workspace; files confined to it and inputs.roots), e.g. how it builds its model.",
    )


class TetherConfig(_Section):
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description=f"Seed for prompt draws, sampling and training, 0 to {MAX_SEED}."
    )
    model: ModelConfig = ModelConfig()
    world: WorldConfig = WorldConfig()
    inputs: InputsConfig = InputsConfig()
    generation: GenerationConfig = GenerationConfig()
    prompts: PromptsConfig = PromptsConfig()
    judge: JudgeConfig = JudgeConfig()
    pairs: PairsConfig = PairsConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    controller: ControllerConfig = ControllerConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    notify: NotifyConfig = NotifyConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any) -> Any:
        # Read as the new spelling; the document itself (a stored run's config) is never rewritten, so its
        # recorded sha stays what the run started with.
        if isinstance(data, dict):
            data = copy.deepcopy(data)
            upgrade_config(data)
        return data

    @model_validator(mode="before")
    @classmethod
    def _pair_pool_by_backend(cls, data: Any) -> Any:
        # pairs.pool null or absent: the backend's default (regularized ranks by the base model's log-probs,
        # which only the transformers backend computes; served and vLLM generation get rpo).
        if not isinstance(data, dict) or not isinstance(data.get("pairs", {}), dict | None):
            return data
        pairs = data.get("pairs") or {}
        if pairs.get("pool") is not None:
            return data
        generation = data.get("generation")
        backend = (generation.get("backend", "transformers") if isinstance(generation, dict)
                   else getattr(generation, "backend", "transformers"))
        return {**data, "pairs": {**pairs, "pool": default_pair_pool(backend)}}

    @model_validator(mode="after")
    def _cross_field(self) -> TetherConfig:
        problems = []
        if self.generation.backend == "vllm" and self.model.device == "cpu":
            problems.append("generation.backend 'vllm' needs a GPU: set model.device to auto or cuda")
        needs = self.pairs.base_logp_strategies() if self.generation.backend != "transformers" else []
        if needs:
            problems.append(f"pair strategy {', '.join(needs)} ranks responses by the base model's "
                            "log-probs, which only generation.backend 'transformers' computes: set pairs.pool to "
                            "null (the backend's default: [{name: rpo}]), other strategies, or [] for none")
        if self.controller.min_pairs > self.prompts.per_round:
            problems.append(f"controller.min_pairs {self.controller.min_pairs} is more than prompts.per_round "
                            f"{self.prompts.per_round}: a round yields at most one pair per prompt")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class ConfigError(TetherError, ValueError):
    """Every problem found in a config file, one line each."""
    exit_code = EXIT_USAGE

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _number_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


def _problem(e: ErrorDetails) -> str:
    """One line per error, with the fix for YAML's number pitfalls that strict types reject."""
    message, given = e["msg"], e.get("input")
    if e["type"] in ("int_type", "float_type") and _number_text(given):
        # YAML 1.1 reads 1e12 or 1e-4 (an exponent without a dot) as text, not a number.
        fix = ("write the whole number in digits" if e["type"] == "int_type"
               else f"write it with a dot, e.g. {float(given)!r}")
        message += f", got the text {given!r}: {fix}"
    elif e["type"] == "int_type" and isinstance(given, float) and math.isfinite(given):
        message += f", got {given!r}: write a whole number without a dot"
    return f"{_location(e['loc'])}: {message}"


def parse_config(data: Any, source: str) -> TetherConfig:
    """Validate a decoded YAML document; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must hold a mapping of sections (model:, judge:, ...)"])
    try:
        return TetherConfig.model_validate(data)
    except ValidationError as err:
        problems = [_problem(e) for e in err.errors()]
        raise ConfigError(source, problems) from None


def old_spellings(data: Any) -> list[str]:
    """One deprecation note per old spelling in a raw config document, which reading it rewrites."""
    return upgrade_config(copy.deepcopy(data)) if isinstance(data, dict) else []


def load_config(path: Path) -> TetherConfig:
    """The config at `path`, with `inputs.roots` anchored at its folder. The file may sit anywhere it is
    named, but must really be there: a link resolving out of its folder, or into a key folder, is refused."""
    try:
        confine(path, (path.absolute().parent,), key_folders(), "config",
                fix="name the config file itself, not a link to one in another folder")
    except InputRefused as err:
        raise ConfigError(str(path), [str(err)]) from None
    if not path.is_file():
        raise ConfigError(str(path), ["file not found (run `tether init` to write a default one)"])
    try:
        data = read_yaml(path)
    except YamlRefused as err:
        raise ConfigError(str(path), [err.problem]) from None
    config = parse_config(data, str(path))
    folder = path.absolute().parent
    world = config.world.model_copy(update={"settings": anchored_world(config.world.name, config.world.settings,
                                                                       folder)})
    inputs = config.inputs.anchored(folder)
    if names_files_in(world.name, world.settings, folder):  # only then: an unneeded root only widens what it reads
        inputs = inputs.with_root(folder)
    controller = config.controller
    if controller.policy_file:  # a config's paths are its folder's
        anchored = folder / Path(controller.policy_file).expanduser()
        controller = controller.model_copy(update={"policy_file": str(anchored)})
    training = config.training
    if training.distributed is not None:
        training = training.model_copy(update={"distributed": training.distributed.anchored(folder)})
    return config.model_copy(update={
        "inputs": inputs, "world": world, "controller": controller, "training": training,
        "model": config.model.model_copy(update={"base": anchored_model(config.model.base, folder, WORLD_MODEL)})})


def default_config_yaml() -> str:
    return (Path(__file__).parent / "defaults" / "config.yaml").read_text()
