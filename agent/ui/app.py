"""The routes of `tether ui`: a Starlette app over one workspace.

Pages read the store read-only, one connection per request; approve, reject and rollback go through
agent/ui/actions.py (the CLI's path, the CLI's key loading); start, resume and stop a run through
agent/ui/control.py (the CLI's commands and functions). Every POST carries the per-server CSRF token; every
request carries the access cookie (agent/ui/guard.py). Templates are Jinja2 with autoescape on for every
template, so stored strings (prompts, answers, notes, names) print literally. `/live` is a digest of what the
pages show; static/desk.js polls it and refreshes a page's live sections in place when it changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from agent.review.show import approval_view
from agent.run.workspace import Workspace, environment_problem
from agent.ui import actions, compare, control, pages
from agent.ui.charts import PLOTLY_JS, ChartCache
from agent.ui.guard import LOOPBACK_HOSTS, AccessGuard, Secrets
from agent.ui.launch import Launches, tail
from agent.ui.samples import FilterError, sample_filter, samples
from guardrails.keys import Signer
from memory import Store

HERE = Path(__file__).parent


def _number(value: Any, digits: int = 3) -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.{digits}f}"


def _signed(value: Any) -> str:
    return "" if not isinstance(value, int | float) else f"{value:+.3f}"


def _page_url(request: Request) -> str:
    """The GET address of what a response shows: desk.js refreshes from it, and puts it in the address bar after
    a form's POST (so a reload does not post the form again)."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.url.path.startswith("/checkpoints/"):
        return "/checkpoints"
    return request.url.path.rsplit("/", 1)[0]  # /runs/R/resume -> /runs/R, /approvals/A/decide -> /approvals/A


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    env.filters["signed"] = _signed
    env.globals["tail"] = tail
    return Jinja2Templates(env=env)


class Console:
    """One workspace's console: its routes, secrets, chart cache and the runs it started."""

    def __init__(self, home: Path, keys: Secrets, reviewer: Signer | None) -> None:
        self.ws = Workspace(home)
        self.keys = keys
        self.reviewer = reviewer  # who this console signs as: the reviewer who started it, else no one
        self.charts = ChartCache()
        self.launches = Launches(self.ws)
        self.templates = _templates()

    # -- plumbing ---------------------------------------------------------------------------

    def _read(self) -> Store:
        return Store(self.ws.db_path, readonly=True)

    def _page(self, request: Request, store: Store, name: str, context: dict[str, Any],
              status: int = 200) -> Response:
        base = {"csrf_token": self.keys.csrf, "home": str(self.ws.home), "pending": pages.pending_count(store),
                "signer": self.reviewer.name if self.reviewer else None, "outcome": None,
                "nav": name.split(".")[0], "page_url": _page_url(request)}
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
            driven = approval.run_id is not None and control.is_busy(self.ws, approval.run_id, self.launches)
            extra: dict[str, Any] = {"view": view, "show_all": show_all, "outcome": outcome, "run_driven": driven}
            if approval.kind == "constitution":
                extra["diff"] = pages.diff_lines(view.get("diff") or "")
            elif "error" not in view:
                extra["scores"] = pages.score_rows(view["heldout"])
            return self._page(request, store, "approval.html", extra, outcome.status if outcome else 200)

    def runs(self, request: Request, outcome: actions.Outcome | None = None) -> Response:
        with self._read() as store:
            runs = store.list_runs()
            waiting = {r.id: len(store.approvals(status="pending", run_id=r.id)) for r in runs}
            states = {r.id: control.display_state(self.ws, r, self.launches) for r in runs}
            return self._page(request, store, "runs.html", {
                "runs": runs, "waiting": waiting, "states": states, "launches": self.launches.all(),
                "outcome": outcome}, outcome.status if outcome else 200)

    def run(self, request: Request, outcome: actions.Outcome | None = None) -> Response:
        run_id = request.path_params["run_id"]
        with self._read() as store:
            run = store.get_run(run_id)
            if run is None:
                return self._page(request, store, "message.html", {
                    "title": "no such run", "message": f"no run '{run_id}' (see Runs)"}, 404)
            context = pages.run_page(store, run)
            context.update(pages.run_controls(self.ws, run, self.launches))
            context["charts"] = self.charts.charts(store, run)
            return self._page(request, store, "run.html", {**context, "outcome": outcome},
                              outcome.status if outcome else 200)

    def samples(self, request: Request) -> Response:
        run_id, round_ = request.path_params["run_id"], request.path_params["round"]
        page = request.query_params.get("page", "1")
        with self._read() as store:
            run = store.get_run(run_id)
            if run is None:
                return self._page(request, store, "message.html", {
                    "title": "no such run", "message": f"no run '{run_id}' (see Runs)"}, 404)
            try:
                chosen = sample_filter(request.query_params)
            except FilterError as err:
                return self._page(request, store, "message.html", {"title": "bad filter", "message": str(err)}, 400)
            context = samples(store, run, round_, request.query_params.get("split", "train"),
                              int(page) if page.isdigit() else 1, chosen)
            return self._page(request, store, "samples.html", context)

    def compare(self, request: Request) -> Response:
        first, second = request.query_params.get("a", ""), request.query_params.get("b", "")
        with self._read() as store:
            try:
                context = compare.compare(store, first, second)
            except compare.CompareError as err:
                return self._page(request, store, "message.html", {"title": "cannot compare", "message": str(err)},
                                  err.status)
            return self._page(request, store, "compare.html", context)

    def live(self, request: Request) -> Response:
        """A digest of what the pages show: desk.js refreshes a page's live sections when it changes."""
        with self._read() as store:
            return JSONResponse({"version": pages.live_version(self.ws, store, self.launches)})

    def plotly_js(self, request: Request) -> Response:
        """The `plotly` package's own plotly.min.js (versioned by the package: cached by the browser)."""
        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"cache-control": "private, max-age=86400"})

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
        refused = self._other_signer(form)
        if refused is not None:
            return await run_in_threadpool(self.approval, request, refused)
        outcome = await run_in_threadpool(
            actions.decide, self.ws, request.path_params["approval_id"], str(form.get("decision", "")),
            self.reviewer, str(form.get("note", "")), form.get("accept_not_met") == "1")
        if outcome.ok and outcome.decided_run is not None:  # what happens to the run now, in words
            after = await run_in_threadpool(control.after_decision, self.ws, self.launches, outcome.decided_run,
                                            self.reviewer, form.get("resume") == "1")
            outcome = actions.Outcome(outcome.status, f"{outcome.message}; {after}", outcome.decided_run)
        return await run_in_threadpool(self.approval, request, outcome)

    async def resume(self, request: Request) -> Response:
        form = await request.form()
        if not self.keys.csrf_ok(form):
            return await self._forbidden(request)
        outcome = self._other_signer(form) or await run_in_threadpool(
            control.resume, self.ws, self.launches, request.path_params["run_id"], self.reviewer)
        return await run_in_threadpool(self.run, request, outcome)

    async def stop(self, request: Request) -> Response:
        form = await request.form()
        if not self.keys.csrf_ok(form):
            return await self._forbidden(request)
        outcome = self._other_signer(form) or await run_in_threadpool(
            control.stop, self.ws, self.launches, request.path_params["run_id"], self.reviewer,
            str(form.get("reason", "")))
        return await run_in_threadpool(self.run, request, outcome)

    async def start(self, request: Request) -> Response:
        form = await request.form()
        if not self.keys.csrf_ok(form):
            return await self._forbidden(request)
        outcome = self._other_signer(form) or await run_in_threadpool(
            control.start, self.ws, self.launches, self.reviewer, str(form.get("rounds", "")),
            str(form.get("seed", "")))
        return await run_in_threadpool(self.runs, request, outcome)

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
            Route("/runs/start", self.start, methods=["POST"], name="start"),
            Route("/runs/{run_id}", self.run, name="run"),
            Route("/runs/{run_id}/resume", self.resume, methods=["POST"], name="resume"),
            Route("/runs/{run_id}/stop", self.stop, methods=["POST"], name="stop"),
            Route("/runs/{run_id}/rounds/{round:int}", self.samples, name="samples"),
            Route("/compare", self.compare, name="compare"),
            Route("/live", self.live, name="live"),
            Route("/static/vendor/plotly.min.js", self.plotly_js, name="plotly"),
            Route("/checkpoints", self.checkpoints, name="checkpoints"),
            Route("/checkpoints/{checkpoint_id}/rollback", self.rollback, methods=["POST"], name="rollback"),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


def create_app(home: Path, *, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, keys: Secrets | None = None,
               reviewer: Signer | None = None) -> Starlette:
    """The console over the workspace at `home`, signing as `reviewer` (None: it reads only).
    `app.state.secrets.access` is the token of the link to print."""
    keys = keys or Secrets()
    console = Console(home, keys, reviewer)
    failure: Callable[..., Any] = console.environment_failure
    app = Starlette(
        routes=console.routes(),
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
                    Middleware(AccessGuard, keys=keys)],
        exception_handlers={sqlite3.OperationalError: failure, OSError: failure},
    )
    app.state.secrets = keys
    app.state.workspace = console.ws
    app.state.launches = console.launches
    return app
