"""`tether ui`: the web console (agent/ui/) on 127.0.0.1, served by uvicorn.

Only this command imports starlette and uvicorn, and only when it runs: other commands start as fast
as before. The server loads no model (no torch, no transformers); it reads the store and signs.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import EXIT_CHECK_FAILED, CliState, TetherGroup, fail, open_store, say, signer
from guardrails import keys, reviewers
from memory import Store

DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one line (and --port 0 picks one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}; pick another --port (0 picks a free one)")
    sock.listen(128)
    return sock


def _reviewer(store: Store, name: str) -> keys.Signer:
    """`name`'s key, checked against the workspace's verified registry before the console serves anything."""
    key = signer(store, name)
    registered = reviewers.registry(store).get(name)
    if registered is None or registered.public_hex != key.public_hex:
        fail(f"'{name}' is not a registered reviewer of this workspace with the key in {keys.resolve_keys_dir()} "
             "(see `tether reviewer list`)", EXIT_CHECK_FAILED)
    return key


def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback needs "
                                                      "--allow-remote.")] = "127.0.0.1",
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow listening beyond this machine "
                                                                      "(plain HTTP; read the warning).")] = False,
    as_reviewer: Annotated[str | None, typer.Option(
        "--as", help="You, a registered reviewer: the console signs approvals, rejections and rollbacks as you, "
        "with your key (loaded now; a passphrase from $TETHER_KEY_PASSPHRASE or asked here), and as no one "
        "else, and starts, resumes and stops runs in your name. Without it the console reads only.")] = None,
) -> None:
    """Web console: the approvals inbox, each approval as `tether show` shows it, runs with their
    notebook and interactive charts, samples per round, two runs compared, checkpoints. With --as NAME,
    approve, reject and roll back there, signed with NAME's key exactly as the CLI signs, and start,
    resume and stop runs (as `tether run`, `resume` and `stop --by NAME` do). Opens only through the
    printed link (it carries an access token)."""
    local = is_loopback(host)
    if not local and not allow_remote:
        fail(f"--host {host} is reachable beyond this machine, and the console signs with the reviewer keys of "
             "this user: pass --allow-remote to do it anyway, or keep 127.0.0.1 and use an SSH tunnel "
             f"(`ssh -L {port or DEFAULT_PORT}:127.0.0.1:{port or DEFAULT_PORT} THIS_HOST`)")
    ws, store = open_store(ctx, readonly=True)  # a workspace, its schema current (as every command checks)
    reviewer = _reviewer(store, as_reviewer) if as_reviewer is not None else None
    store.close()

    import uvicorn  # only here: the rest of the CLI never pays for the web stack

    from agent.ui import LOOPBACK_HOSTS, create_app

    app = create_app(ws.home, allowed_hosts=LOOPBACK_HOSTS if local else ["*"], reviewer=reviewer)
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if not local:
        say(f"warning: serving on {host}:{bound}, beyond this machine, over plain HTTP: anyone who can reach it "
            "and has the link can read this workspace and sign approvals and rollbacks with the reviewer keys of "
            "this user. Prefer 127.0.0.1 and an SSH tunnel.")
    say(f"tether ui: http://{shown}:{bound}/?token={app.state.secrets.access}")
    say(f"signing as {reviewer.name}" if reviewer else "reading only: start it with --as NAME to sign")
    say("open the link above (it carries this console's access token); Ctrl-C stops")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":  # `python -m agent.cli.ui --home H ui`, the same command outside agent/cli/main.py
    standalone = typer.Typer(add_completion=False, cls=TetherGroup)  # errors end as in agent/cli/main.py

    @standalone.callback()
    def _root(ctx: typer.Context, home: Annotated[Path | None, typer.Option("--home")] = None) -> None:
        ctx.ensure_object(CliState).home = home

    standalone.command()(ui)
    standalone()
