"""Screenshots of the web console (`tether ui`) in headless Chromium: the inbox and a run page.

    python scripts/screenshots.py --home WORKSPACE --out DIR [--run RUN_ID] [--chromium PATH]

Serves the workspace on a free loopback port in this process (the same app `tether ui` serves), opens
it through its access link in Debian's Chromium driven by Playwright, and writes DIR/inbox.png and
DIR/run.png (full pages; the newest run unless --run). Needs `chromium` (apt-get install -y chromium)
and the `playwright` Python package; Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}


def find_chromium(explicit: str | None = None) -> str:
    path = explicit or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).is_file():
        raise SystemExit("no chromium found: install it with `apt-get install -y chromium` (or pass --chromium PATH)")
    return path


@contextmanager
def serve(home: Path) -> Iterator[str]:
    """The console over `home` on a free loopback port, in a thread; yields its access link."""
    import uvicorn

    from agent.ui import create_app

    app = create_app(home)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the console did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/?token={app.state.secrets.access}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def browser(chromium: str) -> Iterator[object]:
    """A page of a fresh headless Chromium profile (a playwright.sync_api.Page)."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="tether-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                           args=CHROMIUM_ARGS, viewport=VIEWPORT)
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def newest_run(home: Path) -> str | None:
    from memory import Store

    with Store(home / "tether.db", readonly=True) as store:
        runs = sorted(store.list_runs(), key=lambda r: r.created_at)
    return runs[-1].id if runs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("TETHER_HOME", ".tether")))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run", help="the run to show (default: the newest)")
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    home = args.home.expanduser().resolve()
    if not (home / "tether.db").is_file():
        raise SystemExit(f"no tether workspace at {home}")
    run_id = args.run or newest_run(home)
    args.out.mkdir(parents=True, exist_ok=True)
    chromium = find_chromium(args.chromium)
    with serve(home) as link, browser(chromium) as page:
        base = link.split("/?")[0]
        page.goto(link)  # sets the access cookie and lands on the inbox
        page.screenshot(path=str(args.out / "inbox.png"), full_page=True)
        print(f"wrote {args.out / 'inbox.png'}")
        if run_id is not None:
            page.goto(f"{base}/runs/{run_id}", wait_until="load")
            images = page.locator(".plots img")  # loaded lazily: scrolled to, so the full page shows them
            for i in range(images.count()):
                images.nth(i).scroll_into_view_if_needed()
            page.wait_for_function("() => [...document.querySelectorAll('.plots img')].every(i => i.complete)",
                                   timeout=120_000)
            page.screenshot(path=str(args.out / "run.png"), full_page=True)
            print(f"wrote {args.out / 'run.png'}")
        else:
            print("no run in the workspace: no run page to show", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
