"""The routes of `tether ui`: a Starlette app over one workspace.

Pages read the store read-only, one connection per request; approve, reject and rollback go through
agent/ui/actions.py (the CLI's path, the CLI's key loading). Every POST carries the per-server CSRF
token; every request carries the access cookie (agent/ui/guard.py). Templates are Jinja2 with
autoescape on for every template, so stored strings (prompts, answers, notes, names) print literally.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from agent.review.notebook import render as notebook_text
from agent.review.show import approval_view
from agent.run.workspace import Workspace, environment_problem
from agent.ui import actions, pages
from agent.ui.guard import LOOPBACK_HOSTS, AccessGuard, Secrets
from agent.ui.plots import PlotCache
from guardrails.keys import Signer
from memory import Store

HERE = Path(__file__).parent


def _number(value: Any, digits: int = 3) -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.{digits}f}"


def _signed(value: Any) -> str:
    return "" if not isinstance(value, int | float) else f"{value:+.3f}"


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    env.filters["signed"] = _signed
    return Jinja2Templates(env=env)


class Console:
    """One workspace's console: its routes, secrets and plot cache."""

    def __init__(self, home: Path, keys: Secrets, cache_dir: Path, reviewer: Signer | None) -> None:
        self.ws = Workspace(home)
        self.keys = keys
        self.reviewer = reviewer  # who this console signs as: the reviewer who started it, else no one
        self.plots = PlotCache(cache_dir)
        self.templates = _templates()

    # -- plumbing ---------------------------------------------------------------------------

    def _read(self) -> Store:
        return Store(self.ws.db_path, readonly=True)

    def _page(self, request: Request, store: Store, name: str, context: dict[str, Any],
              status: int = 200) -> Response:
        base = {"csrf_token": self.keys.csrf, "home": str(self.ws.home), "pending": pages.pending_count(store),
                "signer": self.reviewer.name if self.reviewer else None, "outcome": None,
                "nav": name.split(".")[0]}
        return self.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)

    def _message(self, request: Request, status: int, title: str, message: str) -> Response:
        with self._read() as store:
            return self._page(request, store, "message.html", {"title": title, "message": message}, status)

    # -- pages ------------------------------------------------------------------------------

    def inbox(self, request: Request) -> Response:
        with self._read() as store:
            return self._page(request, store, "inbox.html", pages.inbox(store))

    def approval(self, request: Request, outcome: actions.Outcome | None = None) -> Response:
        approval_id = request.path_params["approval_id"]
        with self._read() as store:
            approval = store.get_approval(approval_id)
            if approval is None:
                return self._page(request, store, "message.html", {
                    "title": "no such approval", "message": f"no approval '{approval_id}' (see the inbox)"}, 404)
            show_all = request.query_params.get("all") == "1"
            view = approval_view(store, approval, all_prompts=show_all)
            extra: dict[str, Any] = {"view": view, "show_all": show_all, "outcome": outcome}
            if approval.kind == "constitution":
                extra["diff"] = pages.diff_lines(view.get("diff") or "")
            elif "error" not in view:
                extra["scores"] = pages.score_rows(view["heldout"])
            return self._page(request, store, "approval.html", extra, outcome.status if outcome else 200)

    def runs(self, request: Request) -> Response:
        with self._read() as store:
            runs = store.list_runs()
            waiting = {r.id: len(store.approvals(status="pending", run_id=r.id)) for r in runs}
            return self._page(request, store, "runs.html", {"runs": runs, "waiting": waiting})

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        with self._read() as store:
            run = store.get_run(run_id)
            if run is None:
                return self._page(request, store, "message.html", {
                    "title": "no such run", "message": f"no run '{run_id}' (see Runs)"}, 404)
            context = pages.run_page(store, run)
            context["notebook"] = notebook_text(store, run.id)
            context["plots"] = self.plots.plots(store, run)
            return self._page(request, store, "run.html", context)

    def plot(self, request: Request) -> Response:
        p = request.path_params
        path = self.plots.file(p["run_id"], p["key"], p["name"])
        if path is None:
            return Response("no such plot", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type="image/png", headers={"cache-control": "private, max-age=86400"})

    def samples(self, request: Request) -> Response:
        run_id, round_ = request.path_params["run_id"], request.path_params["round"]
        page = request.query_params.get("page", "1")
        with self._read() as store:
            run = store.get_run(run_id)
            if run is None:
                return self._page(request, store, "message.html", {
                    "title": "no such run", "message": f"no run '{run_id}' (see Runs)"}, 404)
            context = pages.samples(store, run, round_, request.query_params.get("split", "train"),
                                    int(page) if page.isdigit() else 1)
            return self._page(request, store, "samples.html", context)

    def checkpoints(self, request: Request, outcome: actions.Outcome | None = None) -> Response:
        run_id = request.query_params.get("run") or None
        with self._read() as store:
            rows = pages.checkpoints(store, run_id)
            return self._page(request, store, "checkpoints.html", {"all_rows": rows, "run_id": run_id,
                                                                    "outcome": outcome},
                              outcome.status if outcome else 200)

    # -- state changes ----------------------------------------------------------------------

    async def decide(self, request: Request) -> Response:
        form = await request.form()
        if not self.keys.csrf_ok(form):
            return await self._forbidden(request)
        outcome = self._other_signer(form) or await run_in_threadpool(
            actions.decide, self.ws, request.path_params["approval_id"], str(form.get("decision", "")),
            self.reviewer, str(form.get("note", "")), form.get("accept_not_met") == "1")
        return await run_in_threadpool(self.approval, request, outcome)

    async def rollback(self, request: Request) -> Response:
        form = await request.form()
        if not self.keys.csrf_ok(form):
            return await self._forbidden(request)
        outcome = self._other_signer(form) or await run_in_threadpool(
            actions.rollback, self.ws, request.path_params["checkpoint_id"], self.reviewer,
            str(form.get("reason", "")))
        return await run_in_threadpool(self.checkpoints, request, outcome)

    def _other_signer(self, form: Any) -> actions.Outcome | None:
        """A form naming anyone but the console's reviewer is refused: the console never signs as a typed name."""
        by = str(form.get("by", "")).strip()
        if by and (self.reviewer is None or by != self.reviewer.name):
            signs_as = f"only as {self.reviewer.name}, who started it" if self.reviewer else "as no one"
            return actions.Outcome(403, f"this console signs {signs_as}; it never signs as '{by}'")
        return None

    async def _forbidden(self, request: Request) -> Response:
        return await run_in_threadpool(
            self._message, request, 403, "refused: the form's token is missing or wrong",
            "This request did not carry this console's form token, so nothing was changed. Reload the page "
            "and submit the form again (a console restarted since the page was loaded has a new token).")

    def environment_failure(self, request: Request, exc: Exception) -> Response:
        problem = environment_problem(exc, self.ws.home)
        if problem is None:
            raise exc
        return HTMLResponse(f"<!doctype html><meta charset='utf-8'><p>{escape(problem)}</p>", status_code=503)

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.inbox, name="inbox"),
            Route("/approvals/{approval_id}", self.approval, name="approval"),
            Route("/approvals/{approval_id}/decide", self.decide, methods=["POST"], name="decide"),
            Route("/runs", self.runs, name="runs"),
            Route("/runs/{run_id}", self.run, name="run"),
            Route("/runs/{run_id}/rounds/{round:int}", self.samples, name="samples"),
            Route("/runs/{run_id}/plots/{key}/{name}", self.plot, name="plot"),
            Route("/checkpoints", self.checkpoints, name="checkpoints"),
            Route("/checkpoints/{checkpoint_id}/rollback", self.rollback, methods=["POST"], name="rollback"),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


def create_app(home: Path, *, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, keys: Secrets | None = None,
               cache_dir: Path | None = None, reviewer: Signer | None = None) -> Starlette:
    """The console over the workspace at `home`, signing as `reviewer` (None: it reads only).
    `app.state.secrets.access` is the token of the link to print; plots are drawn into `cache_dir`
    (default: a temporary folder removed at shutdown)."""
    keys = keys or Secrets()
    owned = cache_dir is None
    folder = Path(tempfile.mkdtemp(prefix="tether-ui-")) if cache_dir is None else cache_dir
    console = Console(home, keys, folder, reviewer)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console.plots.warm(console.ws.db_path)
        yield
        if owned:
            shutil.rmtree(folder, ignore_errors=True)

    failure: Callable[..., Any] = console.environment_failure
    app = Starlette(
        routes=console.routes(),
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
                    Middleware(AccessGuard, keys=keys)],
        exception_handlers={sqlite3.OperationalError: failure, OSError: failure},
        lifespan=lifespan,
    )
    app.state.secrets = keys
    app.state.workspace = console.ws
    return app
