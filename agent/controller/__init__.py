"""The meta-controller: the policy (`policy.py`) that turns what the monitors saw into one decision, its core
rules (`rules.py`), their shared vocabulary (`vocabulary.py`) and the optional LLM advisor. Pure: no I/O.
Each intervention's own rules live with it in agent/interventions/."""
