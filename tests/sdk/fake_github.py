"""A local GitHub Enterprise Server stand-in for the SCM end-to-end tests.

It answers the documented REST endpoints the runner calls under `/api/v3`
(repositories, branches, tags, commits, pulls, issues, search, organizations,
the current user), the OAuth authorize page (which allows at once and
redirects back with AUTH_CODE) and token endpoint, with the shapes GitHub uses,
honest status codes and `Link` paging headers. Tokens it accepts are listed in
`tokens`; `rate_limited` makes every API call answer like an exhausted limit.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLIENT_ID = "corral-client"
CLIENT_SECRET = "corral-client-secret"
AUTH_CODE = "the-authorization-code"


class FakeGitHub:
    def __init__(self):
        self.tokens = {"pat-good"}
        self.rate_limited = False
        self.issued = 0
        self.requests: list[str] = []
        self.repos = {
            ("octo", "app"): {"default_branch": "main", "branches": ["main", "feature", "feature/x"], "tags": ["v1.0", "release/2024"]},
            ("octo", "lib"): {"default_branch": "trunk", "branches": ["trunk"], "tags": []},
            ("fork-owner", "app"): {"default_branch": "main", "branches": ["main", "patch-1"], "tags": []},
        }
        self.search_names = [f"octo/service-{i}" for i in range(5)]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeGitHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def repo_json(self, owner: str, name: str) -> dict:
        return {
            "name": name,
            "full_name": f"{owner}/{name}",
            "owner": {"login": owner},
            "default_branch": self.repos[(owner, name)]["default_branch"],
            "clone_url": f"{self.base}/{owner}/{name}.git",
            "html_url": f"{self.base}/{owner}/{name}",
            "private": False,
            "permissions": {"admin": False, "push": True, "pull": True},
        }

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                token = auth.split(" ", 1)[1] if " " in auth else ""
                return token in fake.tokens

            def do_POST(self):
                url = urllib.parse.urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                one = {k: v[0] for k, v in form.items()}
                fake.requests.append(f"POST {url.path} {one.get('grant_type', '')}")
                if url.path != "/login/oauth/access_token":
                    return self._send(404, {"message": "Not Found"})
                if one.get("client_id") != CLIENT_ID or one.get("client_secret") != CLIENT_SECRET:
                    return self._send(200, {"error": "incorrect_client_credentials"})
                grant = one.get("grant_type")
                if grant == "authorization_code" and one.get("code") != AUTH_CODE:
                    return self._send(200, {"error": "bad_verification_code"})
                if grant == "refresh_token" and not one.get("refresh_token", "").startswith("refresh-"):
                    return self._send(200, {"error": "bad_refresh_token"})
                fake.issued += 1
                token = f"oauth-token-{fake.issued}"
                fake.tokens.add(token)
                return self._send(200, {
                    "access_token": token, "token_type": "bearer", "scope": "repo,read:org",
                    "expires_in": 28800, "refresh_token": f"refresh-{fake.issued}",
                })

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                fake.requests.append(f"GET {url.path}")
                if url.path == "/login/oauth/authorize":
                    # The user allows the app at once: back to the app with a code and the state.
                    if query.get("client_id") != CLIENT_ID or "redirect_uri" not in query:
                        return self._send(400, {"message": "bad authorize request"})
                    back = query["redirect_uri"] + "?" + urllib.parse.urlencode(
                        {"code": AUTH_CODE, "state": query.get("state", "")})
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if not url.path.startswith("/api/v3/"):
                    return self._send(404, {"message": "Not Found"})
                if fake.rate_limited:
                    return self._send(403, {"message": "API rate limit exceeded"},
                                      {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9999999999"})
                if not self._authorized():
                    return self._send(401, {"message": "Bad credentials"})
                parts = [urllib.parse.unquote(p) for p in url.path[len("/api/v3/"):].split("/") if p]
                page = int(query.get("page", "1"))
                per_page = int(query.get("per_page", "30"))
                if parts == ["user"]:
                    return self._send(200, {"login": "octocat", "id": 1})
                if parts == ["user", "memberships", "orgs"]:
                    # The user's memberships, with their role in each organization.
                    return self._send(200, [
                        {"state": "active", "role": "admin", "organization": {"login": "acme"}},
                        {"state": "active", "role": "member", "organization": {"login": "octo"}},
                    ])
                if parts == ["search", "repositories"]:
                    start = (page - 1) * per_page
                    items = [self._search_item(n) for n in fake.search_names[start:start + per_page]]
                    last = max(1, -(-len(fake.search_names) // per_page))
                    headers = {}
                    if page < last:
                        nxt = f"{fake.base}/api/v3/search/repositories?q=x&per_page={per_page}&page={page + 1}"
                        lst = f"{fake.base}/api/v3/search/repositories?q=x&per_page={per_page}&page={last}"
                        headers["Link"] = f'<{nxt}>; rel="next", <{lst}>; rel="last"'
                    return self._send(200, {"total_count": len(fake.search_names), "incomplete_results": False, "items": items}, headers)
                if len(parts) >= 3 and parts[0] == "repos":
                    key = (parts[1], parts[2])
                    if key not in fake.repos:
                        return self._send(404, {"message": "Not Found"})
                    repo = fake.repos[key]
                    rest = parts[3:]
                    if not rest:
                        return self._send(200, fake.repo_json(*key))
                    if rest in (["branches"], ["tags"]):
                        names = repo[rest[0]]
                        chunk = names[(page - 1) * per_page: page * per_page]
                        return self._send(200, [{"name": n, "commit": {"sha": "a" * 40}} for n in chunk])
                    if len(rest) == 2 and rest[0] == "commits":
                        full = "c0ffee" + "0" * 34
                        if full.startswith(rest[1]):
                            return self._send(200, {"sha": full})
                        return self._send(422, {"message": "No commit found for SHA"})
                    if len(rest) == 2 and rest[0] == "pulls" and rest[1] == "7":
                        head_repo = fake.repo_json("fork-owner", "app")
                        return self._send(200, {
                            "number": 7, "title": "Fix the thing", "state": "open", "draft": True, "merged": False,
                            "user": {"login": "contributor"}, "html_url": f"{fake.base}/octo/app/pull/7",
                            "head": {"ref": "patch-1", "sha": "b" * 40, "repo": head_repo},
                            "base": {"ref": "main", "sha": "a" * 40, "repo": fake.repo_json("octo", "app")},
                        })
                    if len(rest) == 2 and rest[0] == "issues" and rest[1] == "3":
                        return self._send(200, {"number": 3, "title": "It breaks on Tuesdays", "state": "open"})
                return self._send(404, {"message": "Not Found"})

            def _search_item(self, full_name: str) -> dict:
                owner, name = full_name.split("/")
                return {"name": name, "full_name": full_name, "owner": {"login": owner},
                        "html_url": f"{fake.base}/{full_name}", "default_branch": "main"}

        return Handler
