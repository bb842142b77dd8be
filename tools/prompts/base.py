"""The prompt-generator plug-in protocol and registry."""

from __future__ import annotations

from typing import Protocol

from tether_types import Prompt
from tools.registry import Registry
from tools.worlds.base import TaskSet


class PromptGenerator(Protocol):
    def draw(self, taskset: TaskSet, round_no: int, n: int, seed: int) -> list[Prompt]: ...


PROMPT_GENERATORS: Registry[PromptGenerator] = Registry("prompt generator")
