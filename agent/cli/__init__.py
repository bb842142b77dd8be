"""The `tether` command line: `main.py` builds the app from one module per command group (the contract:
../shared/ARCHITECTURE.md); `common.py` holds what they share, and maps every `TetherError` to its exit code."""
