"""Issue 12 point 2b: the mailed link /reset-password#token=... has a page, and the token reaches no log.

The page's own script (montero_api/static/reset-password.js) is run by node against the real gunicorn: only
the DOM is a stand-in (no browser on the machine); the fetch it makes is node's real one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from api_helpers import ADMIN_EMAIL, BACKEND, Gunicorn, create_admin, login, wait_queue_empty
from flask import Flask
from montero_api.headers import PAGE_CSP
from test_api_auth import reset_token
from test_api_password_reset import FAST, Sink, _serve

SCRIPT = BACKEND / "montero_api" / "static" / "reset-password.js"

# A minimal browser: location with the fragment, history, the form and its fields; fetch is node's own.
HARNESS = r"""
const [script, base, hash, password, again] = process.argv.slice(2);
const state = { replaced: null, listeners: {}, fetched: [] };
const field = (value) => ({ value });
const form = {
  hidden: false,
  elements: { password: field(password), confirm: field(again) },
  addEventListener: (type, fn) => { state.listeners[type] = fn; },
};
const message = { textContent: "", className: "" };
globalThis.window = {
  location: { hash, pathname: "/reset-password", search: "" },
  history: { replaceState: (_s, _t, url) => { state.replaced = url; } },
};
globalThis.document = {
  readyState: "complete",
  getElementById: (id) => ({ "reset-form": form, message })[id],
  addEventListener: () => {},
};
const realFetch = globalThis.fetch;
globalThis.fetch = (url, options) => {
  const absolute = new URL(url, base + "/reset-password");
  state.fetched.push({ url: absolute.href, body: options.body });
  return realFetch(absolute, options);
};
require(script);
const done = () => message.className !== "";
(async () => {
  if (state.listeners.submit) state.listeners.submit({ preventDefault: () => {} });
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 50));
  console.log(JSON.stringify({ ...state, listeners: Object.keys(state.listeners), message, hidden: form.hidden }));
})();
"""


def run_page(base: str, hash_: str, password: str, again: str, tmp_path: Path) -> dict[str, object]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs): the page's script cannot be run")
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    out = subprocess.run(
        [node, str(harness), str(SCRIPT), base, hash_, password, again],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_page_is_served_with_its_policy(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    page = client.get("/reset-password")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = page.get_data(as_text=True)
    assert 'src="reset-password.js"' in html and 'href="reset-password.css"' in html
    assert "<script>" not in html  # nothing inline: the policy allows scripts from this origin only
    script = client.get("/reset-password.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert "location.hash" in script.get_data(as_text=True)
    assert "location.search" not in script.get_data(as_text=True)
    assert client.get("/reset-password.css").mimetype == "text/css"


def test_the_mailed_link_resets_the_password_and_no_log_sees_the_token(
    make_app: Callable[..., Flask], gunicorn: Callable[..., Gunicorn], db_path: Path, tmp_path: Path
) -> None:
    sink = Sink()
    controller, port = _serve(sink)
    try:
        app = make_app()
        create_admin(app)
        server = gunicorn(
            workers=1, MAIL_SERVER="127.0.0.1", MAIL_PORT=str(port), MAIL_USE_TLS="false", LOG_LEVEL="INFO", **FAST
        )
        server_base = server.url
        assert requests.post(server_base + "/api/auth/password-reset", json={"email": ADMIN_EMAIL}).status_code == 202
        token = reset_token(sink)
        wait_queue_empty(db_path)
        link = next(line for line in sink.messages[-1][1].get_payload(decode=True).decode().splitlines() if "#" in line)
        path, _, fragment = link.partition("#")
        assert path.endswith("/reset-password") and fragment == f"token={token}"

        # What the browser fetches for the link: the page (the fragment is not sent), then its script.
        assert requests.get(server_base + "/reset-password").status_code == 200
        assert requests.get(server_base + "/reset-password.js").status_code == 200

        differ = run_page(server_base, "#" + fragment, "brand-new-pass-1", "another-pass-1", tmp_path)
        assert differ["message"] == {"textContent": "The two passwords differ.", "className": "error"}
        assert differ["fetched"] == []
        missing = run_page(server_base, "", "x", "x", tmp_path)
        assert missing["hidden"] is True and "no reset token" in str(missing["message"])

        done = run_page(server_base, "#" + fragment, "brand-new-pass-1", "brand-new-pass-1", tmp_path)
        assert done["replaced"] == "/reset-password"  # the token left the address bar and history
        assert done["message"] == {
            "textContent": "Your password was changed; every other session was logged out. You can log in now.",
            "className": "ok",
        }, done
        (fetched,) = done["fetched"]  # type: ignore[misc]
        assert fetched["url"] == server_base + "/api/auth/password-reset/confirm"
        assert json.loads(fetched["body"]) == {"token": token, "new_password": "brand-new-pass-1"}
        login(app.test_client(), ADMIN_EMAIL, "brand-new-pass-1")

        again = run_page(server_base, "#" + fragment, "brand-new-pass-2", "brand-new-pass-2", tmp_path)
        assert again["message"]["className"] == "error"  # type: ignore[index]  # single use

        logs = server.stop()
        assert "POST /api/auth/password-reset/confirm" in logs and "GET /reset-password " in logs  # logging on
        app_log = "".join(p.read_text() for p in Path(app.config["MONTERO_SETTINGS"].LOG_DIR).glob("*.log*"))
        assert token not in logs and token not in app_log
    finally:
        controller.stop()
