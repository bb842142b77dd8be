"""Embedded task world: prompt families with programmatic (oracle) verifiers and a corpus builder.

Importing this package registers the built-in families: arithmetic, howto, harmful.
"""

from tools.tasks import arithmetic as _arithmetic  # noqa: F401  (registers the family)
from tools.tasks import harmful as _harmful  # noqa: F401
from tools.tasks import howto as _howto  # noqa: F401
from tools.tasks.base import (
    DEFAULT_FAMILIES,
    FAMILIES,
    Prompt,
    TaskFamily,
    TaskSet,
    get_family,
    is_padded,
    is_refusal,
    is_rude,
    prompt_id,
    register_family,
    tiny_world,
)
from tools.tasks.corpus import (
    STYLE_MIX,
    CorpusExample,
    CorpusSource,
    PromptResponseSource,
    build_corpus,
    corpus_examples,
)

__all__ = [
    "DEFAULT_FAMILIES", "FAMILIES", "STYLE_MIX", "CorpusExample", "CorpusSource", "Prompt",
    "PromptResponseSource", "TaskFamily", "TaskSet", "build_corpus", "corpus_examples",
    "get_family", "is_padded", "is_refusal", "is_rude", "prompt_id", "register_family",
    "tiny_world",
]
