"""Who may use the console, and which requests may change state.

- Access: the server makes a secret at start and prints it in the link `tether ui` shows (as Jupyter
  does). Opening that link sets an HttpOnly, SameSite=Strict cookie; every other request without it
  gets 401. A loopback port is open to every local user of the machine, and the console signs with
  the keys of the user who started it, so being on 127.0.0.1 alone is not enough.
- CSRF: a second per-server secret sits in every form (`csrf_token`) and is compared in constant time
  on every POST; a missing or wrong token is 403 and nothing is changed.
- Hosts: on loopback only 127.0.0.1 / localhost / ::1 are accepted as Host (Starlette's
  TrustedHostMiddleware), so a DNS-rebound name cannot reach the pages.
- Headers: scripts only from the console itself (static/desk.js, and plotly.min.js from the `plotly`
  package), no inline script, no framing, no referrer, nothing cached.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import FormData, Headers
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CSRF_FIELD = "csrf_token"
TOKEN_PARAM = "token"

EMPTY_STYLE = "sha256-" + base64.b64encode(hashlib.sha256(b"").digest()).decode()
SECURITY_HEADERS = {
    # style-src allows one inline <style>: the empty one Plotly adds and fills through the CSSOM (its modebar and
    # hover rules); that hash is the SHA-256 of the empty string, so no inline style with content can run.
    # (Plotly's map stylesheet, for map traces the desk never draws, stays blocked: one console message.)
    "content-security-policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               f"style-src 'self' '{EMPTY_STYLE}'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Secrets:
    """The two per-server secrets; new ones every time the server starts."""

    access: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def cookie(self) -> str:
        """The access cookie's name: one per server, so two consoles on one host keep their own."""
        return "tether_ui_" + hashlib.sha256(self.access.encode()).hexdigest()[:10]

    def csrf_ok(self, form: FormData) -> bool:
        given = form.get(CSRF_FIELD)
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.csrf.encode())


class AccessGuard:
    """ASGI middleware: the access cookie, or the link with the token (which sets it), or 401."""

    def __init__(self, app: ASGIApp, keys: Secrets) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in query if k == TOKEN_PARAM), None)
        if given is not None and hmac.compare_digest(given.encode(), self.keys.access.encode()):
            rest = urlencode([(k, v) for k, v in query if k != TOKEN_PARAM])
            response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(self.keys.cookie, self.keys.access, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        held = cookie_parser(Headers(scope=scope).get("cookie", "")).get(self.keys.cookie)
        if held is None or not hmac.compare_digest(held.encode(), self.keys.access.encode()):
            await HTMLResponse(_NO_ACCESS, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


_NO_ACCESS = """<!doctype html><meta charset="utf-8"><title>tether: link needed</title>
<p>This console opens only through the link <code>tether ui</code> printed when it started (it carries
an access token). Open that link, or restart <code>tether ui</code> for a new one.</p>
"""
