"""Verifiers: chosen by name from a registry, each scoring a reply against a reference answer."""

from __future__ import annotations

import pytest

from tools.registry import UnknownPluginError
from tools.verifiers import VERIFIERS


def _verify(name: str, response: str, reference: str) -> float:
    return VERIFIERS.build(name).plugin.verify(response, reference)


def test_registry_names_and_suggestions() -> None:
    assert {"exact_match", "numeric_answer", "contains_reference"} <= set(VERIFIERS.names())
    with pytest.raises(UnknownPluginError, match="did you mean 'exact_match'"):
        VERIFIERS.check("exact_mach")
    assert VERIFIERS.build("numeric_answer").spec() == {"name": "numeric_answer", "settings": {}}


def test_exact_match_ignores_case_spacing_and_outer_punctuation() -> None:
    assert _verify("exact_match", "  paris. ", "Paris") == 1.0
    assert _verify("exact_match", '"Buenos  Aires"', "buenos aires") == 1.0
    assert _verify("exact_match", "It is Paris.", "Paris") == 0.0


def test_numeric_answer_reads_the_final_number() -> None:
    assert _verify("numeric_answer", "7 times 8 is 56.", "56") == 1.0
    assert _verify("numeric_answer", "56, no wait, 54", "56") == 0.0
    assert _verify("numeric_answer", "The total is 1,250.", "1250") == 1.0
    assert _verify("numeric_answer", "about 0.30000000000000004", "0.3") == 1.0
    assert _verify("numeric_answer", "I can't help with that.", "56") == 0.0
    plugin = VERIFIERS.build("numeric_answer").plugin
    assert plugin.reference_problem("56") is None and "not one" in plugin.reference_problem("red")


def test_contains_reference_needs_whole_words() -> None:
    assert _verify("contains_reference", "The capital of Japan is Tokyo.", "tokyo") == 1.0
    assert _verify("contains_reference", "It is 14.", "4") == 0.0
    assert _verify("contains_reference", "A category error.", "cat") == 0.0
    assert _verify("contains_reference", "Buenos   Aires, of course", "Buenos Aires") == 1.0
