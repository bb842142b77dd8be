"""What every config section shares: strict, finite, bounded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Upper bounds far above any sane run yet low enough that a typo (1e9 for 1e3) is caught before it
# allocates, loops or trains for days. Each field's description states its bound.
MAX_ROUNDS = 1_000
MAX_PROMPTS = 10_000
MAX_BATCH = 1_024
MAX_NEW_TOKENS = 4_096
MAX_SEED = 2**31 - 1  # per-round seeds add the round number and must fit numpy's 32-bit seeds


class _Section(BaseModel):
    # strict: a YAML float (1.0e+12) is never an int; allow_inf_nan=False: `.inf` / `.nan` are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
