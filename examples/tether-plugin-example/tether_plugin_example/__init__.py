"""An example tether plug-in package: the `concise` judge and the `matches_regex` verifier.

Nothing here registers itself: tether imports each module when a registry is first looked up, through
the entry points in pyproject.toml. Keep module imports light (import torch and models inside the
factory, as tether's own judges do): `tether plugins` and `tether validate` import every installed
plug-in.
"""
