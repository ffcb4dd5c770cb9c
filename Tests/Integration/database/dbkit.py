"""Helpers for the Database plugin's integration tests.

`Kernel` starts the real `meltybase serve` (embedded Postgres and Redis) with the
Database plugin in a fresh temporary data directory; `Kernel.create_portal()` runs
`meltybase portal create NAME --plugins database` against it and returns a `Portal`
holding the base URL and the portal's anon and service_role keys. `Portal.sql()` runs
SQL through the portal's console (`POST /sql/v1/query`), `Portal.rest()` sends a raw
HTTP request to `/rest/v1`, `Portal.client()` makes a supabase-py client.

The binary is $MELTYBASE_BIN, else <repo>/.build/debug/meltybase; the plugin is
`libDatabasePlugin.so` next to it. Nothing is skipped: a missing binary or plugin is
an error with a clear message.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
PLUGIN_FILE = "libDatabasePlugin.so"
TIMEOUT = httpx.Timeout(10.0)

CONFIG_TOML = """\
[[listeners]]
host = "127.0.0.1"
port = {port}

[plugins.database]
path = "{plugin}"

[rate_limit]
per_client = {{ rate = 100000, burst = 100000 }}
per_portal = {{ rate = 100000, burst = 100000 }}
"""


# Gateway answers while a freshly created portal is not yet known to the running kernel.
NOT_YET_SERVED = ("portal_not_found", "plugin_not_enabled", "unauthenticated")


class SetupError(RuntimeError):
    """The test environment could not be prepared (not a behaviour under test)."""


def kernel_binary() -> Path:
    given = os.environ.get("MELTYBASE_BIN")
    binary = Path(given) if given else ROOT / ".build" / "debug" / "meltybase"
    if not binary.is_file():
        raise SetupError(f"kernel binary {binary} does not exist: build it first (`swift build`), "
                         "or point MELTYBASE_BIN at it")
    plugin = binary.parent / PLUGIN_FILE
    if not plugin.is_file():
        raise SetupError(f"the Database plugin {plugin} does not exist: build it first "
                         "(`swift build --product DatabasePlugin`)")
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def jwt_payload(token: str) -> dict[str, Any]:
    """The payload of a JWT, without verifying it."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def error_json(response: httpx.Response) -> dict[str, Any]:
    """The PostgREST-style error body, checked for shape; fails the test otherwise."""
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.request.method} {response.request.url} -> {response.status_code} "
                             f"with a non-JSON body: {response.text[:500]!r}")
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    return body


def describe(response: httpx.Response) -> str:
    return (f"{response.request.method} {response.request.url} -> {response.status_code} "
            f"{dict(response.headers)!r} {response.text[:800]!r}")


class Portal:
    def __init__(self, kernel: "Kernel", name: str, anon: str, service: str):
        self.kernel = kernel
        self.name = name
        self.anon = anon
        self.service = service
        self.base = f"{kernel.url}/p/{name}"
        self.rest_url = f"{self.base}/rest/v1"
        self.auth_url = f"{self.base}/auth/v1"
        self.http = httpx.Client(timeout=TIMEOUT)

    # --- raw HTTP -------------------------------------------------------------

    def headers(self, key: str | None = None, token: str | None = None, **extra: str) -> dict[str, str]:
        key = self.service if key is None else key
        headers = {"apikey": key, "Authorization": f"Bearer {token or key}"}
        headers.update({k.replace("_", "-"): v for k, v in extra.items()})
        return headers

    def request(self, method: str, url: str, *, key: str | None = None, token: str | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        merged = self.headers(key, token)
        if headers:
            merged.update(headers)
        return self.http.request(method, url, headers=merged, **kwargs)

    def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to /rest/v1/<path> (service key unless key=/token= say otherwise)."""
        return self.request(method, f"{self.rest_url}/{path.lstrip('/')}", **kwargs)

    def auth(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(method, f"{self.auth_url}/{path.lstrip('/')}", **kwargs)

    # --- SQL console ----------------------------------------------------------

    def sql_response(self, query: str, key: str | None = None) -> httpx.Response:
        return self.request("POST", f"{self.base}/sql/v1/query", key=key, json={"query": query})

    def sql(self, query: str) -> dict[str, Any]:
        """Runs SQL as the service role; raises SetupError with the error body on failure."""
        response = self.sql_response(query)
        if response.status_code != 200:
            raise SetupError(f"SQL console failed: {describe(response)}\nquery: {query[:2000]}")
        return response.json()

    def sql_rows(self, query: str) -> list[list[Any]]:
        return self.sql(query)["rows"]

    def count(self, table: str) -> int:
        """Row count of a table through the SQL console (service role: no RLS)."""
        return int(self.sql_rows(f"select count(*) from {table}")[0][0])

    def wait_for_rest(self, path: str, timeout: float = 15.0) -> httpx.Response:
        """Retries GET /rest/v1/<path> until it answers 200 (schema cache refresh after DDL)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.rest("GET", path)
            if response.status_code == 200 or time.monotonic() > deadline:
                if response.status_code != 200:
                    raise SetupError(f"REST did not pick up the schema change within {timeout} s: {describe(response)}")
                return response
            time.sleep(0.2)

    def setup(self, query: str, *wait_paths: str) -> None:
        """Runs DDL/DML and waits until REST serves each of `wait_paths`."""
        self.sql(query)
        for path in wait_paths:
            self.wait_for_rest(path)

    # --- clients --------------------------------------------------------------

    def client(self, key: str | None = None):
        from supabase import ClientOptions, create_client

        options = ClientOptions(auto_refresh_token=False, persist_session=False)
        return create_client(self.base, key or self.anon, options=options)

    def close(self) -> None:
        self.http.close()


class Kernel:
    """A running `meltybase serve` with the Database plugin in a fresh data directory."""

    def __init__(self, extra_toml: str = "", start_timeout: float = 180.0, prepare=None, base_toml: str | None = None):
        self.binary = kernel_binary()
        self.directory = Path(tempfile.mkdtemp(prefix="meltybase-db-it-"))
        # As root the kernel runs Postgres as an unprivileged account that must enter it.
        os.chmod(self.directory, 0o755)
        self.data_dir = self.directory / "data"
        self.data_dir.mkdir()
        os.chmod(self.data_dir, 0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.directory / "meltybase.toml"
        # WAL archiving stays on (the default), but scheduled base backups are left to the
        # tests about them (test_backup.py): one per test kernel would only add load.
        backup = "" if "[backup]" in extra_toml else "\n[backup]\nbase_backup_interval_hours = 0\n"
        # base_toml replaces CONFIG_TOML (its {port} is filled in) for kernels that need other
        # [rate_limit] or listener settings.
        base = (base_toml or CONFIG_TOML).replace("{port}", str(self.port)).replace("{plugin}", PLUGIN_FILE)
        self.config.write_text(base.replace("{{", "{").replace("}}", "}") + "\n" + extra_toml + backup)
        self.log_path = self.directory / "kernel.log"
        if prepare is not None:
            prepare(self)  # e.g. copy another kernel's key files into data_dir
        self._serve(start_timeout)

    def _serve(self, start_timeout: float) -> None:
        """Starts `meltybase serve` on this kernel's config, data directory and port (the
        environment's MELTYBASE_* variables left out) and waits until it listens."""
        self._log = open(self.log_path, "ab")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config), "--data-dir", str(self.data_dir),
             "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment,
            cwd=self.directory, start_new_session=True,
        )
        self.portals: list[Portal] = []
        try:
            self._wait_until_listening(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"MeltyBase is listening on (http://127\.0\.0\.1:(\d+))")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SetupError(f"meltybase exited with {self.process.returncode} before listening; "
                                 f"log {self.log_path}:\n{self.log_tail()}")
            match = pattern.search(self.log_text())
            if match:
                self.url = match.group(1)
                self.port = int(match.group(2))
                return
            time.sleep(0.2)
        raise SetupError(f"meltybase did not print 'MeltyBase is listening' within {timeout} s; "
                         f"log {self.log_path}:\n{self.log_tail()}")

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, size: int = 6000) -> str:
        return self.log_text()[-size:]

    def cli(self, *arguments: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
        return subprocess.run(
            [str(self.binary), *arguments, "--config", str(self.config), "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, timeout=timeout, env=environment, cwd=self.directory)

    def create_portal(self, prefix: str = "db", plugins: str = "database") -> Portal:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}".lower()
        result = self.cli("portal", "create", name, "--plugins", plugins, timeout=120)
        if result.returncode != 0:
            raise SetupError(f"`meltybase portal create {name} --plugins {plugins}` failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}\nkernel log:\n{self.log_tail()}")
        keys = {}
        for line in result.stdout.splitlines():
            stripped = line.strip()
            for role in ("anon", "service_role"):
                if stripped.startswith(role + ":"):
                    keys[role] = stripped.split()[-1]
        if set(keys) != {"anon", "service_role"}:
            raise SetupError(f"could not find the anon and service_role keys in:\n{result.stdout}")
        portal = Portal(self, name, keys["anon"], keys["service_role"])
        self.portals.append(portal)
        self._wait_for_portal(portal)
        return portal

    def _wait_for_portal(self, portal: Portal, timeout: float = 30.0) -> None:
        """The running kernel picks a new portal up within about a second."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = portal.rest("GET", "")
                not_yet = last.status_code >= 500 or (
                    last.status_code in (401, 404) and any(word in last.text for word in NOT_YET_SERVED))
                if not not_yet:
                    return
            except httpx.HTTPError as error:
                last = error
            time.sleep(0.25)
        detail = describe(last) if isinstance(last, httpx.Response) else repr(last)
        raise SetupError(f"portal {portal.name} not served within {timeout} s: {detail}\nkernel log:\n{self.log_tail()}")

    # --- the embedded Postgres ------------------------------------------------

    def postgres_cluster(self) -> Path:
        """PGDATA of the embedded cluster (see Sources/Kernel/Embedded/EmbeddedPostgres.swift)."""
        local = self.data_dir / "postgres"
        if (local / "PG_VERSION").exists():
            return local
        match = re.search(r'cluster[=:]\s*"?([^"\s,\]]+/postgres)', self.log_text())
        if match:
            return Path(match.group(1))
        return local

    def postmaster_pid(self) -> int | None:
        """PID of the embedded postmaster: postmaster.pid, else a `postgres` child of the kernel."""
        try:
            pid = int((self.postgres_cluster() / "postmaster.pid").read_text().split("\n")[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            pass
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
            if ppid == self.process.pid and name in ("postgres", "postmaster"):
                return int(entry.name)
        return None

    def socket_directory(self) -> Path:
        cluster = self.postgres_cluster()
        preferred = cluster.parent / "postgres-socket"
        if preferred.exists():
            return preferred
        for candidate in Path("/tmp").glob("meltybase-pg-*"):
            if (candidate / ".s.PGSQL.5432").exists():
                return candidate
        return preferred

    def superuser_sql(self, query: str, database: str = "postgres") -> str:
        """Runs `query` as the embedded cluster's superuser over its unix socket; returns
        psql's unaligned output (for what no portal role may see or change)."""
        psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
        result = subprocess.run(
            [psql, "-h", str(self.socket_directory()), "-U", "meltybase", "-d", database, "-XAt",
             "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise SetupError(f"psql as the superuser failed: {result.stderr}\nquery: {query[:2000]}")
        return result.stdout.strip()

    # --- shutdown -------------------------------------------------------------

    def stop(self, timeout: float = 60.0) -> int | None:
        for portal in self.portals:
            portal.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Anything the kernel left in its process group.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass
        self._log.close()
        return self.process.returncode

    def cleanup(self) -> None:
        if os.environ.get("KEEP_TMP"):
            return
        shutil.rmtree(self.directory, ignore_errors=True)


class RestartedKernel(Kernel):
    """`meltybase serve` again on an earlier kernel's config, data and working directory (a
    restart after a stop or a kill: backups, index snapshots, resumed agent runs)."""

    def __init__(self, previous: "Kernel", start_timeout: float = 180.0):
        self.binary = previous.binary
        self.directory = previous.directory
        self.data_dir = previous.data_dir
        self.config = previous.config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.directory / f"kernel-{time.time_ns()}.log"
        self._serve(start_timeout)


class SignedInUser:
    """A user of `portal` signed up and signed in through supabase-py: email, id and access token."""

    def __init__(self, portal: "Portal", tag: str, password: str = "correct-Horse-7-battery"):
        self.email = f"{tag}-{uuid.uuid4().hex[:10]}@example.com"
        client = portal.client(portal.anon)
        client.auth.sign_up({"email": self.email, "password": password})
        session = client.auth.sign_in_with_password({"email": self.email, "password": password}).session
        self.id = session.user.id
        self.token = session.access_token


def portal_factory(kernel: Kernel, prefix: str, plugins: str = "database"):
    """What the `new_portal` fixtures return: `create(prefix=..., plugins=...)` makes a fresh
    portal on `kernel`, failing the test (not erroring it) when the kernel cannot."""
    import pytest

    def create(prefix: str = prefix, plugins: str = plugins) -> Portal:
        try:
            return kernel.create_portal(prefix, plugins=plugins)
        except SetupError as error:
            pytest.fail(f"cannot create a portal: {error}", pytrace=False)

    return create


def stop_and_check(kernel: Kernel) -> list[str]:
    """Stops `kernel`; the failures to report (a bad exit code, a crash in its log). A clean
    kernel's folder is removed."""
    code = kernel.stop()
    failures = []
    if code not in (0, -15):
        failures.append(f"meltybase exited with {code}; log {kernel.log_path}:\n{kernel.log_tail()}")
    if "Fatal error:" in kernel.log_text():
        failures.append(f"the kernel log shows a crash; log {kernel.log_path}:\n{kernel.log_tail()}")
    if not failures:
        kernel.cleanup()
    return failures
