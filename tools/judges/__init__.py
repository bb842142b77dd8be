"""Judges: one plug-in a file, registered by name in `JUDGES`."""

from tools.judges import rules as _rules  # noqa: F401  (registers the plug-in)
from tools.judges.base import JUDGES, Judge, JudgeItem, Verdict

__all__ = ["JUDGES", "Judge", "JudgeItem", "Verdict"]
