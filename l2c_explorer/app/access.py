"""Only the app's user can drive it: a check of every request before Gradio sees it.

The app can browse folder names, start runs, show thumbnails and copy images anywhere the user can write.
Listening on 127.0.0.1 keeps other machines out, but not a web page the user visits meanwhile: through
DNS rebinding, such a page's own host name comes to point at 127.0.0.1 and its scripts then talk to the
app as if they were the app's page. Three checks close that door (:class:`AccessGuard`, an ASGI
middleware on Gradio's FastAPI app):

1. **Host.** A request must name the app by an address it was started on (127.0.0.1, localhost, [::1],
   or the ``--host`` given). A rebound page names its own domain.
2. **Token.** A secret made for each launch, as Jupyter does: the address the app opens (and prints, and
   shows in a notebook) carries it as ``?token=...``; the first page load turns it into a cookie, so
   reloads and every later request of the page carry it. API clients send ``Authorization: token ...``.
   A page shown inside another site's frame (a notebook) gets no cookies in most browsers; its own
   requests name the page they come from (the ``Referer`` of a same-origin request), token included,
   and that is accepted too. ``--no-token`` turns this check off. A browser opening the page without the
   token is told, in plain words, where to find the full address (:data:`FORBIDDEN_TOKEN_PAGE`).
3. **Origin.** A request that names the page it comes from (``Origin``: browsers send it with every
   ``fetch`` and form that posts) must come from the app's own address, scheme, host and port. A page of
   another port of the same machine is the same *site* for cookies, so the browser sends it the token's
   cookie; only its origin tells it apart (as Jupyter Server checks). So Gradio's CORS, which allows any
   ``localhost`` origin with credentials, is taken out (:func:`same_origin_only`): the app's own page
   needs no CORS, and another page's request reaches this check and is refused.

Gradio's own front-end files (``/assets/``, ``/static/``: the same in every installation, nothing of the
user's) need no token: a style sheet asks for its fonts without one.

This module imports neither gradio nor torch.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

TOKEN_PARAM = "token"
COOKIE_PREFIX = "l2c-explorer-token-"  # + the port: apps on two ports of one host keep their own cookies
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
PUBLIC_PREFIXES = ("/assets/", "/static/")
# What Gradio's launch asks of its own server before it returns (before the page's address is known).
LAUNCH_CHECKS = (("GET", "/gradio_api/startup-events"), ("HEAD", "/"))


def new_token() -> str:
    """A fresh secret for one launch (URL-safe)."""
    return secrets.token_urlsafe(24)


def host_name(header: str | None) -> str | None:
    """The host name of a ``Host`` header, lower case, without port or IPv6 brackets (None: malformed)."""
    if not header:
        return None
    try:
        name = urlsplit("//" + header.strip()).hostname
    except ValueError:
        return None
    return name.lower().rstrip(".") if name else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


@dataclass
class Access:
    """Who may drive one running app: the host names it answers to and its token (None: no token)."""

    bound_host: str
    token: str | None
    armed: bool = False  # False while Gradio's launch checks its own server
    names: frozenset[str] = field(init=False)

    def __post_init__(self):
        host = host_name(self.bound_host) if self.bound_host not in WILDCARD_HOSTS else ""
        names = set(LOOPBACK_NAMES)
        if host:
            names.add(host)
        else:  # every address of this machine: its names too (IP addresses are accepted as such, see allows_host)
            names.update(n.lower() for n in (socket.gethostname(), socket.getfqdn()) if n)
        self.names = frozenset(names)

    def allows_host(self, header: str | None) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        # Listening on every address: any IP literal is one of them or unreachable; a rebound domain is a name.
        return self.bound_host in WILDCARD_HOSTS and _is_ip(name)

    def allows_origin(self, origin: str | None, host: str | None) -> bool:
        """Whether a request's ``Origin`` header is absent or the app's own address (the ``Host`` it names)."""
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip())
        except ValueError:
            return False
        # "null" (a sandboxed frame, a file:// page) and every other site or port are someone else's page
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.strip().lower()

    def cookie_name(self, port: int | None) -> str:
        return f"{COOKIE_PREFIX}{port or 0}"

    def _matches(self, value: str | None) -> bool:
        return bool(value) and secrets.compare_digest(str(value).encode(), str(self.token).encode())

    def token_in(self, *, query: str, headers: dict[str, str], port: int | None) -> tuple[bool, bool]:
        """(whether the request carries the token, whether it came in the URL: then the page gets a cookie)."""
        if self.token is None:
            return True, False
        if self._matches(parse_qs(query).get(TOKEN_PARAM, [None])[0]):
            return True, True
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and self._matches(credential.strip()):
            return True, False
        for part in headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == self.cookie_name(port) and self._matches(value):
                return True, False
        referer = headers.get("referer")
        if referer:
            try:
                ref = urlsplit(referer)
            except ValueError:
                return False, False
            same_origin = ref.netloc.lower() == headers.get("host", "").lower()
            if same_origin and self._matches(parse_qs(ref.query).get(TOKEN_PARAM, [None])[0]):
                return True, False
        return False, False


FORBIDDEN_HOST = ("This address is not one l2c-explorer was started on. Open the address it printed "
                  "(http://127.0.0.1:...).")
FORBIDDEN_ORIGIN = ("This request comes from another web page (another site or another port of this machine); "
                    "only l2c-explorer's own page may use it.")
FORBIDDEN_TOKEN = ("This l2c-explorer needs the address it printed when it started, with its ?token=... "
                   "(or restart it with --no-token).")
# What a person who opened the page without its token sees instead of FORBIDDEN_TOKEN: what to do, in plain
# words. Self-contained (no script, no file from elsewhere) and the same for everyone: nothing of this app's.
FORBIDDEN_TOKEN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>l2c-explorer: open it with its full address</title>
<style>
body { font: 17px/1.5 system-ui, sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } code { background: #f0f0f0; padding: 0 .25em; border-radius: 3px; white-space: nowrap; }
li { margin: .6em 0; }
</style></head>
<body><main id="l2c-needs-token">
<h1>This page needs its full address</h1>
<p>l2c-explorer opens only at the address it gave when it started. That address ends with a key
(<code>?token=</code> and letters) that keeps other web pages and programs out. This address has no key, or
an old one.</p>
<ul>
<li><strong>Started in a terminal?</strong> The full address was printed in the terminal where
<code>l2c-explorer</code> was started, in the line <q>l2c-explorer is running at http://&hellip;</q>.
Copy the whole address from there into this browser's address bar.</li>
<li><strong>Cannot find it, or the terminal is closed?</strong> Restart the app: type <code>l2c-explorer</code>
in a terminal. It opens the page with a new key, and prints its address.</li>
<li><strong>From a notebook?</strong> Use the app object's <code>url</code> (for example <code>app.url</code>
after <code>app = show(...)</code>): that is the full address.</li>
</ul>
</main></body></html>
"""
# The page may style itself and nothing else: no script, no image, font or frame from anywhere.
PAGE_POLICY = b"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


class AccessGuard:
    """ASGI middleware refusing (403) requests that fail :class:`Access`'s checks."""

    def __init__(self, app, access: Access):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        server = scope.get("server") or (None, None)
        if not self.access.allows_host(headers.get("host")):
            return await self._refuse(scope, receive, send, FORBIDDEN_HOST)
        if not self.access.allows_origin(headers.get("origin"), headers.get("host")):
            return await self._refuse(scope, receive, send, FORBIDDEN_ORIGIN)
        if method in ("GET", "HEAD") and (path.startswith(PUBLIC_PREFIXES) or
                                          (not self.access.armed and (method, path) in LAUNCH_CHECKS)):
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"").decode("latin-1")
        allowed, from_url = self.access.token_in(query=query, headers=headers, port=server[1])
        if not allowed:
            if scope["type"] == "http" and _wants_page(method, headers):
                return await _respond(send, FORBIDDEN_TOKEN_PAGE.encode(), b"text/html; charset=utf-8",
                                      ((b"content-security-policy", PAGE_POLICY),))
            return await self._refuse(scope, receive, send, FORBIDDEN_TOKEN)
        if not from_url or scope["type"] != "http":
            return await self.app(scope, receive, send)
        cookie = (f"{self.access.cookie_name(server[1])}={self.access.token}; Path=/; HttpOnly; "
                  "SameSite=Strict").encode("latin-1")

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return await self.app(scope, receive, send_with_cookie)

    @staticmethod
    async def _refuse(scope, receive, send, why: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _respond(send, f"Forbidden. {why}\n".encode(), b"text/plain; charset=utf-8")


def _wants_page(method: str, headers: dict[str, str]) -> bool:
    """Whether a request is a browser opening a page (it asks for HTML), not a program calling the API."""
    return method in ("GET", "HEAD") and "text/html" in headers.get("accept", "").lower()


async def _respond(send, body: bytes, content_type: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A 403 answer with ``body``, never kept by a cache (the same address answers once the token is sent)."""
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"), *extra]})
    await send({"type": "http.response.body", "body": body})


def same_origin_only(cors_middleware: type):
    """A lifespan for the server's app that removes ``cors_middleware`` (Gradio's, which answers any localhost
    origin, another port's page included, and answers its preflight requests itself, before any check).

    It runs when the server starts, before the first request: the middleware stack is rebuilt without it.
    """

    @asynccontextmanager
    async def lifespan(app):
        kept = [m for m in app.user_middleware if m.cls is not cors_middleware]
        if len(kept) != len(app.user_middleware):
            app.user_middleware = kept
            app.middleware_stack = app.build_middleware_stack()
        yield

    return lifespan
