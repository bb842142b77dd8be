"""The `reward_model` judge on tiny random sequence-classification models built here (Llama and GPT-2, with
conftest's byte-level BPE tokenizer): scores are deterministic, in [0, 1], the same batched as one by one
(right padding, whatever the positions), in the raw logit's order, read from the logit the model itself
gives; a model that returns NaN gives invalid verdicts; a path that is not on this machine is refused
naming the fix; and a run builds it from its config through the registry and frees it on close."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from conftest import _TINY_CHAT_TEMPLATE, _TINY_CORPUS
from guardrails.constitution import default_constitution_yaml, parse_constitution
from tools.judges import JUDGES, JudgeItem, PairItem, Verdict
from tools.judges.reward_model import RewardModelJudge, to_unit
from tools.registry import PluginSettingsError

ROOT = Path(__file__).resolve().parents[1]
CONSTITUTION = parse_constitution(default_constitution_yaml(), "default")
ITEMS = [
    JudgeItem("What is 2 + 2?", "4"),
    JudgeItem("Please explain why the sky is blue in one sentence.",
              "Sunlight scatters off the air, and blue light scatters the most, so the sky looks blue to us."),
    JudgeItem("Hello there, how are you today?", "Thanks for asking, I am doing well."),
    JudgeItem("Write a short poem about the sea and the stars.", "The sea sings. " * 12),
    JudgeItem("What is the capital of France?", "Paris is the capital of France."),
    JudgeItem("Say nothing.", ""),
    JudgeItem("The quick brown fox?", "I am sorry, but I cannot help with that request."),
]


def _tokenizer(chat_template: bool, pad: bool):  # -> PreTrainedTokenizerFast
    """conftest's tiny tokenizer (eos <|end|>, no pad token), optionally with a pad token of its own."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<|pad|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_TINY_CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>",
                                        additional_special_tokens=specials[2:5],
                                        **({"pad_token": "<|pad|>"} if pad else {}))
    if chat_template:
        tokenizer.chat_template = _TINY_CHAT_TEMPLATE
    return tokenizer


def _reward_model(folder: Path, arch: str = "llama", *, chat_template: bool = True, pad: bool = False,
                  num_labels: int = 1, nan: bool = False) -> Path:
    """A 2-layer, hidden-32 random `arch` ...ForSequenceClassification and its tokenizer in `folder`."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification
    from transformers.utils import logging as hf_logging

    tokenizer = _tokenizer(chat_template, pad)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "num_labels": num_labels}
    torch.manual_seed(0)
    if arch == "gpt2":  # absolute positions: left padding would move every real token
        model = GPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **ids))
    else:
        model = LlamaForSequenceClassification(LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, initializer_range=0.2, **ids))
    head = model.score.weight
    with torch.no_grad():
        head.fill_(math.nan) if nan else head.normal_(0.0, 1.0)  # logits spread well beyond rounding
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    finally:
        hf_logging.enable_progress_bar()
    return folder


@pytest.fixture(scope="module")
def rms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reward_models")
    return {"llama": _reward_model(root / "llama"),
            "llama-pad": _reward_model(root / "llama-pad", pad=True),
            "gpt2": _reward_model(root / "gpt2", "gpt2", chat_template=False),
            "two-labels": _reward_model(root / "two-labels", num_labels=2),
            "nan": _reward_model(root / "nan", nan=True)}


def build(path: Path | str, **settings: object) -> RewardModelJudge:
    return JUDGES.build("reward_model", {"path": str(path), **settings}, constitution=CONSTITUTION).plugin


def logits_of(verdicts: list[Verdict]) -> list[float]:
    return [v.details["logit"] for v in verdicts]


# -- scores ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_scores_are_deterministic_in_range_and_the_same_batched_as_one_by_one(rms: dict[str, Path],
                                                                              arch: str) -> None:
    batched, single = build(rms[arch], batch_size=4), build(rms[arch], batch_size=1)
    first = batched.score(ITEMS)
    assert all(v.valid and v.score is not None and 0.0 <= v.score <= 1.0 for v in first)
    assert [v.score for v in batched.score(ITEMS)] == [v.score for v in first]
    one_by_one = single.score(ITEMS)
    assert logits_of(first) == pytest.approx(logits_of(one_by_one), abs=1e-4)
    assert len({round(x, 3) for x in logits_of(first)}) == len(ITEMS)  # a real spread, not a constant head
    assert [float(v.raw) for v in first] == logits_of(first)


def test_the_logit_is_the_models_own_for_the_rendered_conversation(rms: dict[str, Path]) -> None:
    """With a pad token of its own, a single unpadded input through the plain model gives the judge's logit:
    the chat template with a user and an assistant turn, or "prompt\\n\\nresponse" when chat_template is off."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = rms["llama-pad"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    item = ITEMS[1]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": item.prompt},
                                          {"role": "assistant", "content": item.response}], tokenize=False)
    with torch.no_grad():
        want_chat = float(model(**tokenizer(chat, add_special_tokens=False, return_tensors="pt")).logits[0, 0])
        want_plain = float(model(**tokenizer(f"{item.prompt}\n\n{item.response}", return_tensors="pt")).logits[0, 0])
    got_chat = build(folder).score([item, ITEMS[3]])[0].details["logit"]
    got_plain = build(folder, chat_template=False).score([item, ITEMS[3]])[0].details["logit"]
    assert got_chat == pytest.approx(want_chat, abs=1e-5)
    assert got_plain == pytest.approx(want_plain, abs=1e-5)
    assert got_chat != pytest.approx(got_plain, abs=1e-3)


def test_the_mapped_score_keeps_the_logit_order(rms: dict[str, Path]) -> None:
    verdicts = build(rms["llama"]).score(ITEMS)
    logits = logits_of(verdicts)
    by_logit = sorted(range(len(ITEMS)), key=lambda i: logits[i])
    assert sorted(range(len(ITEMS)), key=lambda i: verdicts[i].score) == by_logit
    assert [v.score for v in verdicts] == pytest.approx([1 / (1 + math.exp(-x)) for x in logits])
    low, high = min(logits), max(logits)
    linear = build(rms["llama"], scale=[low, high]).score(ITEMS)
    assert [v.score for v in linear] == pytest.approx([(x - low) / (high - low) for x in logits])
    clipped = build(rms["llama"], scale=[low + 1e-3, high - 1e-3]).score(ITEMS)
    assert clipped[by_logit[0]].score == 0.0 and clipped[by_logit[-1]].score == 1.0
    assert to_unit(-1000.0, None) == 0.0 and to_unit(1000.0, None) == 1.0 and to_unit(0.0, None) == 0.5


def test_pairs_prefer_the_higher_logit(rms: dict[str, Path]) -> None:
    judge = build(rms["llama"])
    a, b = ITEMS[2], JudgeItem(ITEMS[2].prompt, "I am sorry, but I cannot help with that request.")
    la, lb = logits_of(judge.score([a, b]))
    (verdict,) = judge.compare([PairItem(a.prompt, a.response, b.response)])
    assert verdict.valid and verdict.winner == ("a" if la > lb else "b")


def test_a_long_input_is_cut_at_its_start_and_still_scored(rms: dict[str, Path]) -> None:
    """128 positions; a 40-token limit keeps the ends of the responses, which then still differ."""
    judge = build(rms["gpt2"], max_length=40)
    prompt = "The quick brown fox jumps over the lazy dog. " * 60
    verdicts = judge.score([JudgeItem(prompt, "Paris is the capital."), JudgeItem(prompt, "I cannot help.")])
    assert all(v.valid for v in verdicts)
    assert verdicts[0].details["logit"] != pytest.approx(verdicts[1].details["logit"], abs=1e-4)


def test_label_index_picks_a_logit_of_a_multi_logit_head(rms: dict[str, Path]) -> None:
    with pytest.raises(PluginSettingsError, match="head has 2 logits: set label_index"):
        build(rms["two-labels"])
    with pytest.raises(PluginSettingsError, match="label_index 2 is outside the head's 2 logit"):
        build(rms["two-labels"], label_index=2)
    first, second = (logits_of(build(rms["two-labels"], label_index=i).score(ITEMS[:3])) for i in (0, 1))
    assert first != pytest.approx(second, abs=1e-3)


# -- failures ----------------------------------------------------------------------------------------------


def test_nan_logits_are_invalid_verdicts_not_an_exception(rms: dict[str, Path]) -> None:
    judge = build(rms["nan"], batch_size=3)
    verdicts = judge.score(ITEMS)
    assert [v.valid for v in verdicts] == [False] * len(ITEMS)
    assert all(v.score is None and "non-finite logit (nan)" in v.details["invalid"] for v in verdicts)
    (pair,) = judge.compare([PairItem("Hi?", "Hello.", "Hey.")])
    assert not pair.valid
    jury = JUDGES.build("jury", {"judges": [{"name": "rules"}, {"name": "reward_model",
                                                                "settings": {"path": str(rms["nan"])}}],
                                 "quorum": 2}, constitution=CONSTITUTION).plugin
    assert not jury.score(ITEMS[:1])[0].valid  # the jury abstains rather than let rules decide alone


@pytest.mark.parametrize("path", ["no-such-folder", "tether-tests/no-such-reward-model"])
def test_a_path_not_on_this_machine_is_refused_naming_the_fix(tmp_path: Path, path: str) -> None:
    ref = str(tmp_path / path) if "/" not in path else path
    with pytest.raises(PluginSettingsError, match="nothing is downloaded") as err:
        build(ref)
    assert "hf download" in str(err.value) and "save_pretrained" in str(err.value) and ref in str(err.value)
    (problem,) = JUDGES.requirements("reward_model", {"path": ref})
    assert problem == str(err.value)


def test_a_causal_lm_or_a_folder_without_a_config_is_refused(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PluginSettingsError, match="holds a LlamaForCausalLM, not a"):
        build(tiny_random_model_dir)
    with pytest.raises(PluginSettingsError, match="holds no config.json"):
        build(tmp_path)


@pytest.mark.parametrize(("settings", "message"), [
    ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
    ({"max_length": 1.5}, "max_length must be a whole number >= 1"),
    ({"scale": [1.0, 0.0]}, "scale must be \\[low, high\\]"),
    ({"scale": [0.0, math.inf]}, "scale must be \\[low, high\\]"),
    ({"label_index": -1}, "label_index must be a whole number >= 0"),
    ({"device": "gpu"}, "device must be cpu, cuda"),
    ({"chat_template": "yes"}, "chat_template must be true or false"),
])
def test_bad_settings_are_refused(rms: dict[str, Path], settings: dict, message: str) -> None:
    with pytest.raises(PluginSettingsError, match=message):
        build(rms["llama"], **settings)


# -- as a run builds it ----------------------------------------------------------------------------------


def test_a_run_builds_it_from_its_config_lazily_and_frees_it_on_close(rms: dict[str, Path]) -> None:
    from agent.config import JudgeConfig
    from agent.interventions.pool import JUDGE_SWITCHED, SwitchablePool

    settings = {"path": str(rms["llama"]), "batch_size": 2, "scale": [-3.0, 3.0]}
    config = JudgeConfig(name="reward_model", settings=settings, pool=[{"name": "rules"}])
    for slot in config.slots():
        JUDGES.check(slot.name, slot.settings)
    pool = SwitchablePool(JUDGES, config.slots(), JUDGE_SWITCHED)
    built = pool.build(0, key="constitution-1", constitution=CONSTITUTION, policy=None)
    assert built.spec() == {"name": "reward_model", "settings": settings}
    judge = built.plugin
    assert judge._loaded is None  # nothing loads until the first score
    assert [v.score for v in judge.score(ITEMS)] == [v.score for v in build(**settings).score(ITEMS)]
    model = weakref.ref(judge._loaded.model)
    pool.close()
    gc.collect()
    assert judge._loaded is None and model() is None
    assert all(v.valid for v in judge.score(ITEMS[:2]))  # loads again after a close
    judge.close()


def test_a_run_preflight_names_a_missing_reward_model(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    from agent.config import parse_config
    from agent.run.preflight import preflight, problems

    missing = str(tmp_path / "rm")
    config = parse_config({"model": {"base": str(tiny_random_model_dir)},
                           "judge": {"name": "rules", "pool": [{"name": "reward_model",
                                                                "settings": {"path": missing}}]}}, "test.yaml")
    found = [p for p in problems(preflight(config, tiny_random_model_dir)) if "reward_model" in p]
    assert len(found) == 1 and missing in found[0] and "save_pretrained" in found[0]


def test_building_it_loads_no_torch(rms: dict[str, Path]) -> None:
    """Config validation builds judges; only the first score may pay for torch and transformers."""
    code = ("import sys\nfrom tools.judges import JUDGES\n"
            f"JUDGES.build('reward_model', {{'path': {str(rms['llama'])!r}}})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
