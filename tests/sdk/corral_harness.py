"""Start and stop a `corral serve` process for the tests, and drive the `corral` CLI.

Standard library only: both the modern suite (gitpod-sdk 1.x) and the legacy suite
(gitpod-sdk 0.11, its own venv) import this module by path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def corral_bin() -> str:
    """Path of the corral binary: $CORRAL_BIN or the debug build in the repo."""
    env = os.environ.get("CORRAL_BIN")
    if env:
        return env
    return str(REPO_ROOT / "target" / "debug" / "corral")


def require_binary() -> str:
    path = corral_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"corral binary not found at {path}: build it (cargo build) or set CORRAL_BIN"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


# -- the store ------------------------------------------------------------------
#
# CORRAL_TEST_DATABASE=postgres runs every server on PostgreSQL: each gets a new
# database of its own (on the server named by CORRAL_TEST_POSTGRES_URL), dropped
# when the server is cleaned up, also after a failure. Unset or `sqlite`: the
# embedded SQLite store. This is the Python counterpart of the Rust tests'
# harness (crates/testkit) and behaves alike: the same server URL and default,
# the same database names, the same advice when the server does not answer.

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def test_database() -> str:
    """The store the suites run on: `sqlite` (default) or `postgres`."""
    kind = os.environ.get("CORRAL_TEST_DATABASE", "") or "sqlite"
    if kind not in ("sqlite", "postgres"):
        raise RuntimeError(f"CORRAL_TEST_DATABASE must be sqlite or postgres, not {kind!r}")
    return kind


def _postgres_server_url() -> str:
    return os.environ.get("CORRAL_TEST_POSTGRES_URL", "") or DEFAULT_POSTGRES_URL


def _psql(sql: str) -> None:
    """Runs one statement on the test PostgreSQL server with `psql`."""
    url = _postgres_server_url()
    parts = urllib.parse.urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"  # no password in messages
    try:
        res = subprocess.run(
            ["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
    except FileNotFoundError:
        raise RuntimeError("CORRAL_TEST_DATABASE=postgres needs the psql client on PATH") from None
    if res.returncode == 2:  # psql could not reach the server
        raise RuntimeError(
            f"PostgreSQL at {where} does not answer ({res.stderr.strip()}): start it, or run "
            "the PostgreSQL variant of the suites only through scripts/test; "
            "CORRAL_TEST_POSTGRES_URL names another server"
        )
    if res.returncode != 0:
        raise RuntimeError(f"psql on {where} failed ({res.returncode}) for {sql!r}: {res.stderr.strip()}")


def create_postgres_database() -> tuple[str, str]:
    """A new, empty database; returns (its name, its URL)."""
    name = f"corral_test_{uuid.uuid4().hex}"
    _psql(f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(_postgres_server_url())
    return name, urllib.parse.urlunsplit(parts._replace(path="/" + name))


def drop_postgres_database(name: str) -> None:
    """Drops the database, ending any connection still open to it. A failure is
    reported, not raised: cleaning up goes on."""
    try:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except RuntimeError as e:
        print(f"could not drop the test database {name}: {e}", file=sys.stderr)


class CorralServer:
    """One `corral serve` process on a free loopback port with its own data dir.

    The store is `database_url` when given; otherwise, with CORRAL_TEST_DATABASE=postgres,
    a new PostgreSQL database of its own (dropped by `cleanup`), else SQLite in the data dir.
    """

    def __init__(self, data_dir: str | None = None, database_url: str | None = None):
        self._own_dir = data_dir is None
        self._own_database: str | None = None
        if database_url is None and test_database() == "postgres":
            self._own_database, database_url = create_postgres_database()
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="corral-test-")
        self.database_url = database_url
        self.log_path = os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) + ".log")
        self.log_path = os.path.abspath(self.log_path)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL without the /api prefix."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Base URL the SDKs use (ends in /api)."""
        return f"{self.url}/api"

    def start(self, timeout: float = 60.0) -> "CorralServer":
        binary = require_binary()
        last_error = None
        for _attempt in range(3):
            self.port = free_port()
            args = [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
            if self.database_url:
                args += ["--database-url", self.database_url]
            self._log_file = open(self.log_path, "ab")
            self._log_file.write(f"\n===== {' '.join(args)}\n".encode())
            self._log_file.flush()
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self._wait_healthy(timeout)
                return self
            except ServerStartError as e:
                last_error = e
                self.stop()
                if "exited" not in str(e):
                    break
        raise ServerStartError(f"{last_error}\n--- server log ---\n{self.log_tail()}")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"corral serve exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise ServerStartError(f"corral serve did not answer /healthz within {timeout}s")

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> "CorralServer":
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            if self._own_database:
                drop_postgres_database(self._own_database)
                self._own_database = None
            try:
                os.unlink(self.log_path)
            except OSError:
                pass

    # -- data --------------------------------------------------------------

    def admin_token(self) -> str:
        with open(os.path.join(self.data_dir, "admin-token")) as f:
            return f.read().strip()

    def log_tail(self, max_bytes: int = 20000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "(no server log)"
        return data[-max_bytes:].decode("utf-8", "replace")

    # -- CLI ---------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run `corral ARGS... --data-dir DIR` and return stdout; raise on failure."""
        cmd = [require_binary(), *args, "--data-dir", self.data_dir]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        res = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed with {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
            )
        return res.stdout

    @staticmethod
    def _last_line(out: str) -> str:
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError("CLI printed nothing on stdout; expected a token on the last line")
        return lines[-1]

    def add_user(self, email: str, admin: bool = False, org: str | None = None) -> str:
        """`corral admin user add`; returns the new user's API token."""
        args = ["admin", "user", "add", "--email", email]
        if admin:
            args.append("--admin")
        if org:
            args += ["--org", org]
        return self._last_line(self.cli(*args))

    def add_org(self, name: str, admin_email: str) -> str:
        """`corral admin org add`; returns the new org admin's API token."""
        return self._last_line(self.cli("admin", "org", "add", "--name", name, "--admin-email", admin_email))

    def audit_events(self, org: str | None = None) -> list[dict]:
        """`corral admin audit --json`: every event (newest first)."""
        args = ["admin", "audit", "--json", "--limit", "100000"]
        if org:
            args += ["--org", org]
        return [json.loads(line) for line in self.cli(*args).splitlines() if line.strip()]

    def store_dump(self) -> bytes:
        """Every byte the store holds: the SQLite files, or a data dump of the
        PostgreSQL database (to look for secrets that must not be there)."""
        if self.database_url:
            res = subprocess.run(
                ["pg_dump", "--data-only", "--no-owner", self.database_url],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
            )
            if res.returncode != 0:
                raise RuntimeError(f"pg_dump failed: {res.stderr.decode(errors='replace')}")
            return res.stdout
        data = b""
        for name in ("corral.db", "corral.db-wal"):
            path = os.path.join(self.data_dir, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    data += f.read()
        return data

    def server_log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""
