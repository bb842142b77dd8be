"""Pre-flight on real architectures, and the example recipes.

Randomly initialised Llama, Qwen2 and GPT-2 models (2 layers, hidden 32) saved with `save_pretrained`,
with the byte-level BPE tokenizer of conftest's tiny model, with and without a chat template. The
recipes in examples/ validate against them: a hub id is resolved from a Hugging Face cache folder
holding the random model of the right architecture under that id, exactly as a downloaded one would
be. And `training.target_modules: [all-linear]` trains GPT-2, whose projections are Conv1D, not Linear.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from test_training import make_job

from agent.config import ConfigError, TetherConfig, TrainingConfig, parse_config
from agent.run.preflight import preflight, problems
from agent.run.runner import run_preflight
from agent.run.workspace import Workspace
from conftest import _TINY_CHAT_TEMPLATE, _TINY_CORPUS, init_workspace
from policies.training import run_train_job

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("llama", "qwen2", "gpt2")
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the default target_modules
OWN_LINEAR = {"llama": ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
              "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              "gpt2": ["c_attn", "c_proj", "c_fc"]}
RECIPES = {"qwen2.5-0.5b": ("qwen2", "Qwen/Qwen2.5-0.5B-Instruct"),
           "llama-3-8b": ("llama", "meta-llama/Meta-Llama-3-8B-Instruct")}


def _tokenizer(folder: Path, chat_template: bool):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_TINY_CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>",
                                        additional_special_tokens=specials[2:])
    if chat_template:
        tokenizer.chat_template = _TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return tokenizer


def _random_model(arch: str, folder: Path, chat_template: bool = True) -> Path:
    """A 2-layer, hidden-32 random `arch` causal LM and its tokenizer in `folder`."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )
    from transformers.utils import logging as hf_logging

    tokenizer = _tokenizer(folder, chat_template)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=256, **ids))
    else:
        shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "max_position_embeddings": 256}
        model = (Qwen2ForCausalLM(Qwen2Config(**shape, **ids)) if arch == "qwen2"
                 else LlamaForCausalLM(LlamaConfig(**shape, **ids)))
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        hf_logging.enable_progress_bar()
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("architectures")
    built = {arch: _random_model(arch, root / arch) for arch in ARCHS}
    built["gpt2-no-template"] = _random_model("gpt2", root / "gpt2-no-template", chat_template=False)
    return built


def _config(folder: Path, model: dict | None = None, **sections: dict) -> TetherConfig:
    return parse_config({"model": {"base": str(folder), **(model or {})}, **sections}, "test.yaml")


def _problems(folder: Path, **sections: dict) -> list[str]:
    return problems(preflight(_config(folder, **sections), folder))


# -- target modules, chat templates, missing models ------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_target_modules_that_exist_pass_and_all_linear_passes_everywhere(models: dict[str, Path], arch: str) -> None:
    assert _problems(models[arch], training={"target_modules": OWN_LINEAR[arch]}) == []
    assert _problems(models[arch], training={"target_modules": ["all-linear"]}) == []
    if arch != "gpt2":
        assert _problems(models[arch]) == []  # the default attention projections


def test_gpt2_with_the_default_targets_names_its_own_linear_layers(models: dict[str, Path]) -> None:
    (problem,) = _problems(models["gpt2"])
    assert problem.startswith(f"training.target_modules {ATTENTION} are not modules of {models['gpt2']}")
    for name in ("c_attn", "c_proj", "c_fc", "all-linear"):
        assert name in problem
    (problem,) = _problems(models["gpt2"], training={"target_modules": ["c_attn", "q_proj"]})
    assert "target_modules ['q_proj'] are not modules" in problem


def test_all_linear_stands_alone() -> None:
    with pytest.raises(ConfigError, match="all-linear names every linear layer already; list it alone"):
        parse_config({"training": {"target_modules": ["all-linear", "c_attn"]}}, "test.yaml")


def test_a_tokenizer_without_a_chat_template_is_refused_unless_plain_text_is_chosen(
        models: dict[str, Path]) -> None:
    plain = models["gpt2-no-template"]
    all_linear = {"target_modules": ["all-linear"]}
    (problem,) = _problems(plain, training=all_linear)
    assert "has no chat template" in problem and "model.chat_template_fallback: plain" in problem
    assert _problems(plain, training=all_linear, model={"chat_template_fallback": "plain"}) == []


@pytest.mark.parametrize("base", ["missing-folder", "tether-tests/no-such-model"])
def test_a_missing_folder_or_an_uncached_hub_id_is_refused(tmp_path: Path, base: str) -> None:
    ref = str(tmp_path / base) if base == "missing-folder" else base
    found = problems(run_preflight(Workspace(tmp_path), _config(Path(ref))))
    assert found == [f"model.base {ref!r} is neither a local folder nor a hub id in the local Hugging Face cache "
                     "(nothing is downloaded): save the model with save_pretrained and point model.base at that "
                     "folder"]


# -- the recipes in examples/ ------------------------------------------------------------------------------

def _hub_cache(root: Path, entries: dict[str, Path]) -> Path:
    """A Hugging Face hub cache holding each folder as the snapshot of its hub id (refs/main -> snapshot)."""
    commit = "0" * 40
    for repo_id, folder in entries.items():
        repo = root / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    return root


def _validate(home: Path, config: Path, hub_cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), "validate", str(config)],
                          capture_output=True, text=True, timeout=600, env=env)


def test_each_example_config_validates_on_a_random_model_of_its_architecture(
        models: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    cache = _hub_cache(tmp_path / "hub", {hub_id: models[arch] for arch, hub_id in RECIPES.values()})
    for recipe, (_, hub_id) in RECIPES.items():
        config = ROOT / "examples" / recipe / "config.yaml"
        assert yaml.safe_load(config.read_text())["model"]["base"] == hub_id
        result = _validate(home, config, cache)
        assert result.returncode == 0, (recipe, result.stderr)
        assert f"{config} is valid" in " ".join(result.stderr.split())
    # the same recipe with its model not in the cache: nothing is downloaded, and validate says so
    result = _validate(home, ROOT / "examples" / "llama-3-8b" / "config.yaml", tmp_path / "empty-hub")
    assert result.returncode == 2
    assert "model.base 'meta-llama/Meta-Llama-3-8B-Instruct' is neither a local folder nor a hub id in the " \
        "local Hugging Face cache" in " ".join(result.stderr.split())
    # the data world's recipe (its paths are relative to the workspace), model.base on the random Llama
    shutil.copytree(ROOT / "examples" / "data_world", home / "data_world")
    doc = yaml.safe_load((home / "data_world" / "config.yaml").read_text())
    doc["model"]["base"] = str(models["llama"])
    (home / "data_world" / "config.yaml").write_text(yaml.safe_dump(doc))
    result = _validate(home, home / "data_world" / "config.yaml", cache)
    assert result.returncode == 0, result.stderr


# -- all-linear trains GPT-2 --------------------------------------------------------------------------------

def test_all_linear_trains_gpt2s_conv1d_projections_and_warm_starts(models: dict[str, Path], tmp_path: Path) -> None:
    lora = TrainingConfig(target_modules=["all-linear"]).lora_spec()
    first = run_train_job(make_job(models["gpt2"], tmp_path, "first", lora=lora))
    assert first.steps == 2  # 8 pairs, 4 a step, one epoch
    weights = load_file(str(first.adapter_dir / "adapter_model.safetensors"))
    adapted = {key.split(".lora_")[0].rsplit(".", 1)[-1] for key in weights}
    assert adapted == {"c_attn", "c_proj", "c_fc"}  # every linear layer but the output head (lm_head)
    assert all(weights[key].abs().sum() > 0 for key in weights if "lora_B" in key)  # zero-initialised, now trained
    # the next round starts from this adapter: PEFT saved all-linear as the layer names it expanded to
    second = run_train_job(make_job(models["gpt2"], tmp_path, "second", lora=lora,
                                    init_adapter=str(first.adapter_dir), init_adapter_sha256=first.sha256))
    assert second.steps == 2 and second.sha256 != first.sha256
