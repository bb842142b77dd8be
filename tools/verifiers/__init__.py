"""Verifiers: one plug-in a file, registered by name in `VERIFIERS`.

    exact_match         the response is the reference
    numeric_answer      the response's final number is the reference number
    contains_reference  the reference occurs in the response
"""

from tools.verifiers import contains_reference as _contains_reference  # noqa: F401  (registers the plug-in)
from tools.verifiers import exact_match as _exact_match  # noqa: F401
from tools.verifiers import numeric_answer as _numeric_answer  # noqa: F401
from tools.verifiers.base import VERIFIERS, Verifier

VERIFIERS.use_entry_points("tether.verifiers")  # installed packages' verifiers, loaded on first lookup

__all__ = ["VERIFIERS", "Verifier"]
