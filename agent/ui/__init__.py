"""`tether ui`: the reviewer's desk in a browser (Starlette + Jinja2, served by uvicorn).

The inbox of pending approvals, each approval as `tether show` shows it, runs with their notebook and
interactive charts, samples per round (filtered), two runs compared, checkpoints; approve, reject and roll
back signed with the reviewer's key exactly as the CLI signs; start, resume and stop runs as the CLI does
(agent/ui/control.py); pages refresh in place as runs move. Imports no model code.
"""

from agent.ui.app import create_app
from agent.ui.guard import LOOPBACK_HOSTS, Secrets

__all__ = ["LOOPBACK_HOSTS", "Secrets", "create_app"]
