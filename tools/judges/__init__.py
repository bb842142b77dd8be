"""Judges: one plug-in a file, registered by name in `JUDGES`."""

from tools.judges import calculator as _calculator  # noqa: F401  (each import registers its plug-in)
from tools.judges import code_runner as _code_runner  # noqa: F401
from tools.judges import consensus as _consensus  # noqa: F401
from tools.judges import degrading as _degrading  # noqa: F401  (a test fixture: the unreliable-judge failure world's)
from tools.judges import hf as _hf  # noqa: F401
from tools.judges import jury as _jury  # noqa: F401
from tools.judges import length_biased as _length_biased  # noqa: F401
from tools.judges import length_control as _length_control  # noqa: F401
from tools.judges import meta as _meta  # noqa: F401
from tools.judges import moderation as _moderation  # noqa: F401
from tools.judges import openai_judge as _openai_judge  # noqa: F401
from tools.judges import reward_model as _reward_model  # noqa: F401
from tools.judges import rules as _rules  # noqa: F401
from tools.judges import self_judge as _self_judge  # noqa: F401
from tools.judges.base import (
    JUDGES,
    Judge,
    JudgeItem,
    PairItem,
    PairJudge,
    PairVerdict,
    PolicyHandle,
    Verdict,
    combine_orders,
    compare,
    compare_by_scores,
)
from tools.judges.length_control import LengthControl, apply_length_control
from tools.judges.llm import BackendPolicy, LLMJudge
from tools.judges.meta import Judgment, MetaItem, MetaJudge, preference_summary
from tools.judges.parsing import parse_score, parse_winner
from tools.judges.prompts import pointwise_prompt

JUDGES.use_entry_points("tether.judges")  # installed packages' judges, loaded on first lookup (tools/registry.py)

__all__ = [
    "JUDGES", "BackendPolicy", "Judge", "JudgeItem", "Judgment", "LLMJudge", "LengthControl",
    "MetaItem", "MetaJudge", "PairItem", "PairJudge", "PairVerdict", "PolicyHandle", "Verdict",
    "apply_length_control", "combine_orders", "compare", "compare_by_scores", "parse_score",
    "parse_winner", "pointwise_prompt", "preference_summary",
]
