"""One error root for guardrails, split by what the caller must do about it.

- `GateError`: the request is refused as given (bad usage, wrong state); nothing changed. CLI exit 2.
- `DeniedError`: the actor may not decide this (unregistered key, the run itself, the proposer). CLI exit 1.
- `TamperError`: something failed a check it must pass (a hash, a signature, the audit chain, an actor
  that may not approve); recorded in the audit log where possible. CLI exit 1.
- `TransientError`: the check could not run (a file missing or unreadable, the database busy or full).
  Nothing is decided on it: an approved adapter stays approved and on disk, the run pauses.
"""

from __future__ import annotations

from tether_types import EXIT_USAGE, TetherError


class GuardrailError(TetherError, RuntimeError):
    """Root of every guardrails refusal."""


class GateError(GuardrailError):
    """The request is refused; nothing changed."""
    exit_code = EXIT_USAGE


class DeniedError(GuardrailError):
    """A person or actor may not make this decision (not a registered reviewer, the proposer, the run
    itself); the refusal is audited. CLI exit 1."""


class TamperError(GuardrailError):
    """An artifact, signature or record failed its integrity check."""


class TransientError(GuardrailError):
    """A check could not run (missing or unreadable file, busy or full database); retry after fixing it."""
