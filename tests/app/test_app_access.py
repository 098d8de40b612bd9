"""Only the app's user can drive it: a foreign Host or a missing token gets 403, for the page, the API and files."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from app_helpers import DEMO, wait_until

from l2c_explorer.app.access import Access, host_name

FOREIGN = "evil.example.com"


def fetch(url: str, *, host: str | None = None, headers: dict | None = None, method: str = "GET"):
    """(status, headers, body) of one request, with ``host`` as its Host header when given."""
    request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    if host is not None:
        port = urlsplit(url).port
        request.add_unredirected_header("Host", f"{host}:{port}")
    try:
        with urllib.request.urlopen(request, timeout=150) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def thumbnail(served_app):
    image = next((DEMO / "omniglot_keble").rglob("*.png"))
    thumb = served_app.workbench.thumbs.get(image)
    assert thumb is not None
    return thumb


def test_host_names_and_tokens_without_a_server():
    access = Access("127.0.0.1", "s3cret")
    assert [host_name(h) for h in ("127.0.0.1:7860", "[::1]:7860", "LocalHost", "evil.example.com:80", "")] == \
        ["127.0.0.1", "::1", "localhost", "evil.example.com", None]
    assert all(access.allows_host(h) for h in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "localhost"))
    assert not any(access.allows_host(h) for h in ("evil.example.com:7860", "127.0.0.1.nip.io", "", None, "10.0.0.2"))
    lan = Access("192.168.1.5", "s3cret")
    assert lan.allows_host("192.168.1.5:7860") and lan.allows_host("127.0.0.1") and not lan.allows_host("example.org")
    everywhere = Access("0.0.0.0", None)
    assert everywhere.allows_host("10.1.2.3:7860") and not everywhere.allows_host("rebound.example.com")

    def carried(query="", **headers):
        return access.token_in(query=query, headers={"host": "127.0.0.1:7860", **headers}, port=7860)

    assert carried("token=s3cret") == (True, True)  # in the address: the page then gets a cookie
    assert carried(authorization="token s3cret") == (True, False)
    assert carried(cookie="a=b; l2c-explorer-token-7860=s3cret") == (True, False)
    assert carried(cookie="l2c-explorer-token-7861=s3cret") == (False, False)  # another app's cookie
    assert carried(referer="http://127.0.0.1:7860/?token=s3cret&job=1") == (True, False)  # the page in a frame
    assert carried(referer="http://evil.example.com/?token=s3cret") == (False, False)
    assert carried("token=wrong") == (False, False) and carried() == (False, False)
    assert Access("127.0.0.1", None).token_in(query="", headers={}, port=1) == (True, False)  # --no-token
    # a page of its own sends its own origin (or none); another port, site, scheme or "null" is another page's
    own = "127.0.0.1:7860"
    assert access.allows_origin(None, own) and access.allows_origin("http://127.0.0.1:7860", own)
    assert access.allows_origin("http://LOCALHOST:7860", "localhost:7860")
    assert not any(access.allows_origin(o, own) for o in (
        "http://127.0.0.1:7960", "http://localhost:7860", "http://evil.example.com", "null", "file://", "",
        "ftp://127.0.0.1:7860", "http://127.0.0.1:7860.evil.example.com"))


def test_a_foreign_host_is_refused_for_the_page_the_api_and_files(served_app, thumbnail):
    base, auth = served_app.base_url, served_app.headers
    for url in (served_app.url, f"{base}gradio_api/info", f"{base}config", f"{base}gradio_api/file={thumbnail}"):
        status, _, body = fetch(url, host=FOREIGN, headers=auth)
        assert status == 403, url
        assert b"not one l2c-explorer was started on" in body
    # the same requests, naming the app by its own address, are answered
    assert fetch(f"{base}gradio_api/info", host="localhost", headers=auth)[0] == 200


def test_a_missing_or_wrong_token_is_refused(served_app, thumbnail):
    base = served_app.base_url
    assert served_app.token and f"token={served_app.token}" in served_app.url
    for url in (base, f"{base}?job=0123456789abcdef", f"{base}gradio_api/info", f"{base}config",
                f"{base}gradio_api/file={thumbnail}", f"{base}gradio_api/queue/status"):
        assert fetch(url)[0] == 403, url
        assert fetch(url, headers={"Authorization": "token not-the-token"})[0] == 403, url
    assert fetch(f"{base}gradio_api/run/check_folder", method="POST")[0] == 403


def test_the_token_opens_the_page_and_a_cookie_keeps_it_open(served_app, thumbnail):
    status, headers, body = fetch(served_app.url)
    assert status == 200 and b"l2c-explorer" in body
    cookie = headers["set-cookie"].split(";")[0]
    assert cookie.endswith("=" + served_app.token) and "HttpOnly" in headers["set-cookie"]
    assert "SameSite=Strict" in headers["set-cookie"]
    # a reload (no token in the address) and the page's own requests carry the cookie
    for url in (served_app.base_url, f"{served_app.base_url}gradio_api/info",
                f"{served_app.base_url}gradio_api/file={thumbnail}"):
        assert fetch(url, headers={"Cookie": cookie})[0] == 200, url
    # other programs send the token in a header
    assert fetch(f"{served_app.base_url}gradio_api/info", headers=served_app.headers)[0] == 200


def test_the_page_opens_inside_another_sites_frame(page, served_app):
    """As in a notebook: a frame of another site gets no cookies; the page's requests name the tokenized page."""
    page.set_content(f'<iframe id="app" src="{served_app.url}" width="1300" height="900"></iframe>')
    frame = page.frame_locator("#app")
    frame.locator("#model input").wait_for()
    wait_until(lambda: frame.locator("#model input").input_value() == "omniglot", timeout=150,
               what="the page in the frame to load its models (its first API call)")
    frame.locator("#check-folder").click()
    frame.locator("#folder-report .l2c-problem").wait_for()
    assert "No folder given" in frame.locator("#folder-report").inner_text()


def test_a_request_from_another_page_is_refused_even_with_the_token(served_app):
    """The token's cookie goes to every port of the host, and Gradio's CORS trusts any localhost origin: the
    origin is what tells the app's page from another's."""
    base, auth = served_app.base_url, served_app.headers
    own = base.rstrip("/")
    for origin in ("http://127.0.0.1:7960", "http://localhost:7960", "null", "https://evil.example.com"):
        status, headers, body = fetch(f"{base}gradio_api/info", headers={**auth, "Origin": origin})
        assert status == 403 and b"another web page" in body, origin
        assert "access-control-allow-origin" not in {k.lower() for k in headers}, origin
        assert fetch(f"{base}gradio_api/run/check_folder", method="POST",
                      headers={**auth, "Origin": origin})[0] == 403, origin
    assert fetch(f"{base}gradio_api/info", headers={**auth, "Origin": own})[0] == 200


ATTACK_PAGE = """<!doctype html><title>another page</title><script>
async function attack(app) {
  const out = {};
  try { out.info = (await (await fetch(app + "gradio_api/info", {credentials: "include"})).text()).length; }
  catch (e) { out.info = "refused"; }
  try {
    await fetch(app + "gradio_api/call/browse", {method: "POST", credentials: "include", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: JSON.stringify({data: ["/"]})});
    out.browse = "sent";
  } catch (e) { out.browse = "refused"; }
  return out;
}
</script>"""


@pytest.mark.browser
def test_a_page_of_another_local_port_cannot_drive_the_app(page, served_app):
    """In Chromium: the app's page opened (its cookie set), then a page served from another port of 127.0.0.1
    reads the API and posts to it. Its requests carry the cookie (same site) and are refused."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ATTACK_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)  # a port the test holds
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(served_app.url)
        page.locator("#model input").wait_for()
        # the cookie the browser will send to the app's port, whichever page of this host asks
        assert any(c["name"].startswith("l2c-explorer-token-") for c in page.context.cookies(served_app.base_url))
        app = served_app.base_url.replace("localhost", "127.0.0.1")
        # what the app answered that page's two calls, as the network saw it (a no-cors answer is opaque); the
        # app page's own last requests (a script it loads) may still be arriving, and are not the attack's
        attacked = (f"{app.rstrip('/')}/gradio_api/info", f"{app.rstrip('/')}/gradio_api/call/")
        answers = []
        page.on("response", lambda r: answers.append((r.url, r.status)) if r.url.startswith(attacked) else None)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        result = page.evaluate("app => attack(app)", app)
        # events arrive while Playwright is called: wait through it, for both calls' answers or, once one
        # has come, 2 s more (a no-cors post's answer may never be shown to the page: waiting for it took 60 s)
        quiet = 0
        for _ in range(300):
            if len(answers) >= 2 or quiet >= 10:
                break
            quiet = quiet + 1 if answers else 0
            page.wait_for_timeout(200)
    finally:
        server.shutdown()
        server.server_close()
    assert result["info"] == "refused", result  # the page could not read the app's API
    assert answers and all(status == 403 for _, status in answers), answers


def _words(html_text: str) -> str:
    """The text a person reads on a page: tags out, spaces collapsed."""
    import re

    return " ".join(re.sub(r"<[^>]+>", " ", html_text).split())


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_without_the_token_is_told_what_to_do_in_plain_words(served_app):
    base = served_app.base_url
    for url in (base, f"{base}?job=0123456789abcdef", f"{base}?token=not-the-token"):
        status, headers, body = fetch(url, headers={"Accept": BROWSER_ACCEPT})
        headers = {k.lower(): v for k, v in headers.items()}
        assert status == 403, url
        assert headers["content-type"].startswith("text/html") and headers["cache-control"] == "no-store"
        html_text = body.decode("utf-8")
        words = _words(html_text)
        assert "This page needs its full address" in words
        assert "The full address was printed in the terminal where l2c-explorer was started" in words
        assert "Restart the app: type l2c-explorer in a terminal. It opens the page with a new key" in words
        assert "From a notebook? Use the app object's url" in words
        # self-contained: nothing fetched from anywhere, and the browser is told so
        assert not any(s in html_text.lower() for s in ("<script", "<link", "<img", "<iframe", "src=", "href=",
                                                        "url(", "@import"))
        assert "default-src 'none'" in headers["content-security-policy"]
        # nothing of this app: no token, no folder, none of the page
        assert served_app.token not in html_text and str(served_app.workbench.workspace.root) not in html_text
        assert "gradio" not in html_text.lower() and "omniglot" not in html_text.lower()


def test_programs_without_the_token_still_get_a_short_plain_answer(served_app):
    base = served_app.base_url
    for url, headers, method in ((f"{base}gradio_api/info", {"Accept": "application/json"}, "GET"),
                                 (f"{base}config", {}, "GET"),
                                 (base, {}, "GET"),  # no Accept: a program, not a browser
                                 (f"{base}gradio_api/run/check_folder", {"Accept": BROWSER_ACCEPT}, "POST")):
        status, answer, body = fetch(url, headers=headers, method=method)
        assert status == 403, url
        assert {k.lower(): v for k, v in answer.items()}["content-type"].startswith("text/plain"), url
        assert body.startswith(b"Forbidden.") and b"--no-token" in body and len(body) < 300, url


@pytest.mark.browser
def test_chromium_opening_the_address_without_its_token_shows_what_to_do(page, served_app):
    fetched = []
    page.on("request", lambda r: fetched.append(r.url))
    answer = page.goto(served_app.base_url)
    assert answer.status == 403
    assert page.locator("h1").inner_text() == "This page needs its full address"
    assert "printed in the terminal" in page.inner_text("body")
    page.wait_for_timeout(500)  # anything the page would still ask for
    assert fetched == [served_app.base_url], fetched  # the page alone: no script, style sheet, font or image
    assert page.locator("#model").count() == 0  # and none of the app
