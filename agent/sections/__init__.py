"""The sections of the config schema (agent/config.py) that stand on their own: the shared base and bounds,
the controller's settings, inputs, pairs and training. Each intervention's section lives with it."""
