"""Telling people a run needs them: when it waits at a gate, stops, fails, or an invariant blocks a
candidate. `notify:` in the config names a shell command (run by /bin/sh, so pipes and redirections work)
and/or URLs in `apprise` syntax (e.g. `json://host:port/path`, `mailto://...`, `slack://...`). A notice
names the workspace (`--home` in the command to run next, so it works from any folder) and, with
`notify.desk_url`, the desk's page for it. A failure to notify is audited, never fatal: the run goes on,
and `tether status` / `tether approvals` show the same.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from agent.config import NotifyConfig

Event = Literal["gate", "stopped", "failed", "invariant_blocked"]

TITLES: dict[str, str] = {
    "gate": "waits for a human decision",
    "stopped": "has stopped",
    "failed": "has failed",
    "invariant_blocked": "had a candidate blocked by an invariant",
}


@dataclass(frozen=True)
class Notice:
    event: Event
    run_id: str
    round: int
    detail: str
    review: str  # the command a person runs next, with --home
    home: str = ""  # the workspace, absolute
    link: str = ""  # the desk's page for it, when notify.desk_url is set

    @property
    def title(self) -> str:
        return f"tether: run {self.run_id} {TITLES[self.event]} (round {self.round})"

    @property
    def body(self) -> str:
        return f"{self.detail}\nNext: {self.review}" + (f"\nDesk: {self.link}" if self.link else "")


def make_notice(cfg: NotifyConfig, event: Event, run_id: str, round_no: int, detail: str, home: Path,
                command: str, page: str) -> Notice:
    """`command` is the tether subcommand to run next (e.g. `show ap-1`), `page` the desk path for it."""
    home = home.resolve()
    link = f"{cfg.desk_url.rstrip('/')}/{page.lstrip('/')}" if cfg.desk_url else ""
    return Notice(event, run_id, round_no, detail, f"tether --home {shlex.quote(str(home))} {command}", str(home),
                  link)


def send(cfg: NotifyConfig, notice: Notice) -> list[str]:
    """Fire every configured channel for this event; returns one line per failure (empty when all went)."""
    if notice.event not in cfg.events:
        return []
    failures = []
    if cfg.command:
        failures += _command(cfg.command, notice, cfg.timeout)
    if cfg.urls:
        failures += _apprise(cfg.urls, notice, cfg.timeout)
    return failures


def _command(command: str, notice: Notice, timeout: float) -> list[str]:
    """The command gets the notice as JSON on stdin and as TETHER_* environment variables."""
    env = {**os.environ, "TETHER_EVENT": notice.event, "TETHER_RUN_ID": notice.run_id,
           "TETHER_ROUND": str(notice.round), "TETHER_TITLE": notice.title, "TETHER_REVIEW": notice.review,
           "TETHER_HOME": notice.home, "TETHER_LINK": notice.link}
    try:  # by the shell, as documented: the user's own pipes, redirections and variables work
        result = subprocess.run(command, shell=True, input=json.dumps(asdict(notice)), env=env, text=True,
                                capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired, ValueError) as err:
        return [f"notify.command failed: {err}"]
    if result.returncode != 0:
        return [f"notify.command exited {result.returncode}: {result.stderr.strip()[-300:]}"]
    return []


def _apprise(urls: list[str], notice: Notice, timeout: float) -> list[str]:
    import apprise

    failures = []
    for url in urls:
        target = apprise.Apprise()
        if not target.add(url):
            failures.append(f"notify.urls: apprise cannot use {_redact(url)}")
            continue
        try:
            if not target.notify(title=notice.title, body=notice.body):
                failures.append(f"notify.urls: {_redact(url)} did not accept the notification")
        except Exception as err:
            failures.append(f"notify.urls: {_redact(url)}: {type(err).__name__}: {err}")
    return failures


def _redact(url: str) -> str:
    """Never log credentials: keep the scheme and host only."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/..."
