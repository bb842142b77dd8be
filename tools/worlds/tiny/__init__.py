"""The embedded tiny world: prompt families with programmatic (oracle) verifiers, their corpus, the
small model built from it, and judge-audit probes. Registered in `tools.worlds.WORLDS` as "tiny".

Only this folder imports its modules or names the world or its families (tests/test_world_boundary.py
checks both); everything else asks the `World` protocol and its capabilities (tools/worlds/base.py).
Importing this package registers the built-in families (arithmetic, howto, harmful) and the world. The
model builder (torch) is `tools.worlds.tiny.model`, imported on first use:
`python -m tools.worlds.tiny.model OUT_DIR`. The failure worlds (tools/worlds/tiny/failures/) are variants of
this world, one failure each, registered with it.
"""

from tools.worlds.tiny import arithmetic as _arithmetic  # noqa: F401  (registers the family)
from tools.worlds.tiny import failures as _failures  # noqa: F401  (registers the failure worlds built on it)
from tools.worlds.tiny import harmful as _harmful  # noqa: F401
from tools.worlds.tiny import howto as _howto  # noqa: F401
from tools.worlds.tiny import world as _world  # noqa: F401  (registers the world)
from tools.worlds.tiny.corpus import (
    FAMILY_WEIGHT,
    STYLE_MIX,
    CorpusExample,
    CorpusSource,
    PromptResponseSource,
    build_corpus,
    corpus_examples,
)
from tools.worlds.tiny.detectors import is_padded, is_refusal, is_rude
from tools.worlds.tiny.families import (
    DEFAULT_FAMILIES,
    FAMILIES,
    TaskFamily,
    get_family,
    register_family,
    tiny_world,
    verify,
)
from tools.worlds.tiny.world import TinyWorld

__all__ = [
    "DEFAULT_FAMILIES", "FAMILIES", "FAMILY_WEIGHT", "STYLE_MIX", "CorpusExample", "CorpusSource",
    "PromptResponseSource",
    "TaskFamily", "TinyWorld", "build_corpus", "corpus_examples", "get_family", "is_padded", "is_refusal",
    "is_rude", "register_family", "tiny_world", "verify",
]
