"""`tether ui`: the reviewer's desk in a browser (Starlette + Jinja2, served by uvicorn).

The inbox of pending approvals, each approval as `tether show` shows it, runs with their notebook and
plots, samples per round, checkpoints; approve, reject and roll back signed with the reviewer's key
exactly as the CLI signs. Imports no model code.
"""

from agent.ui.app import create_app
from agent.ui.guard import LOOPBACK_HOSTS, Secrets

__all__ = ["LOOPBACK_HOSTS", "Secrets", "create_app"]
