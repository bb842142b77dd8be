"""`python -m agent.cli`: the same app as the `tether` script."""

from agent.cli.main import app

app()
