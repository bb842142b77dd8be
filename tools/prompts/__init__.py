"""Prompt generators: one plug-in a file, registered by name in `PROMPT_GENERATORS`."""

from tools.prompts import pool as _pool  # noqa: F401  (registers the plug-in)
from tools.prompts.base import PROMPT_GENERATORS, PromptGenerator

PROMPT_GENERATORS.use_entry_points("tether.prompts")  # installed packages' generators, on first lookup

__all__ = ["PROMPT_GENERATORS", "PromptGenerator"]
