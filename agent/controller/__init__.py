"""The meta-controller: the policy (`policy.py`) that turns what the monitors saw into one decision, its core
rules (`rules.py`), their shared vocabulary (`vocabulary.py`), the optional LLM advisor, and the learned policy
(`learned.py`, fitted by `fit.py`) with the outcomes it learns from (`outcomes.py`). Pure but for reading a policy
file (`learned.load_policy`).
Each intervention's own rules live with it in agent/interventions/."""
