"""A browser's view of corral without a browser: the dashboard's session
endpoints (`/auth/session`) and its cookie, driven with the standard library,
for the API-level checks of sessions, CSRF and the OAuth callback's binding.
The real browser runs in tests/browser.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from helpers import Api

COOKIE = "corral_session"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def request(url: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Answer:
    """One HTTP request; error statuses are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def sign_in_request(server, token: str, headers: dict[str, str] | None = None) -> Answer:
    return request(
        f"{server.url}/auth/session", "POST", json.dumps({"token": token}).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


def cookie_of(answer: Answer) -> str:
    """The session token the answer's Set-Cookie carries."""
    first = answer.headers["set-cookie"].split(";")[0]
    name, _, value = first.partition("=")
    assert name == COOKIE, answer.headers["set-cookie"]
    return value


@dataclass
class BrowserSession:
    """A signed-in browser: its cookie and the CSRF token the page keeps."""

    server: object
    cookie: str
    csrf: str
    info: dict = field(default_factory=dict)

    @classmethod
    def sign_in(cls, server, token: str) -> "BrowserSession":
        answer = sign_in_request(server, token)
        assert answer.status == 200, answer.text
        info = answer.json()
        return cls(server, cookie_of(answer), info["csrfToken"], info)

    def headers(self, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": f"{COOKIE}={self.cookie}"}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers

    def get(self, url: str) -> Answer:
        return request(url, headers=self.headers(csrf=False))

    def api(self, csrf: str | None = None) -> Api:
        """The official SDK's clients (JSON codec, as the dashboard sends),
        authenticated by the cookie and the given CSRF token (the session's
        own by default; "" for none)."""
        headers = {"Cookie": f"{COOKIE}={self.cookie}"}
        csrf = self.csrf if csrf is None else csrf
        if csrf:
            headers["X-CSRF-Token"] = csrf
        return Api(self.server.api_url, None, codec="json", extra_headers=headers)

    def sign_out(self, csrf: bool = True) -> Answer:
        return request(f"{self.server.url}/auth/session", "DELETE", headers=self.headers(csrf))
