"""Helpers for tests of several kernels behind HAProxy (test_cluster.py).

- `joined_toml(first)`: the `[database] url` / `[redis] url` lines that point a kernel at
  the first kernel's embedded Postgres and Redis, and `[kernel] keys_dir` at its key set.
- `HAProxy`: `deploy/haproxy.cfg` with its placeholders filled, run in the foreground
  (`haproxy -db`), with the stats socket read as CSV (`show stat`).
- `Endpoint`: a base URL that dbkit.Portal can use in place of a kernel (the proxy).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dbkit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "haproxy.cfg"
SERVED_BY = "x-meltybase-server"


# Every kernel of the test cluster: HAProxy connects from loopback and forwards the client.
KERNEL_TABLE = """
[kernel]
trusted_proxies = ["127.0.0.1"]
"""


def joined_toml(first: dbkit.Kernel) -> str:
    """Config lines that point a kernel at `first`'s embedded Postgres and Redis, with
    `first`'s key set (its data directory, the default key folder) as `[kernel] keys_dir`."""
    return KERNEL_TABLE + f"""keys_dir = "{first.data_dir}"

[database]
url = "host={first.socket_directory()} port=5432 user=meltybase dbname=meltybase"

[redis]
url = "unix://{first.data_dir / 'redis' / 'redis.sock'}"
"""


class Endpoint:
    """Stands in for a dbkit.Kernel where only `url` is used (a Portal through the proxy)."""

    def __init__(self, url: str):
        self.url = url


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if not found:
        raise dbkit.SetupError("haproxy is not installed: `apt-get install haproxy` (scripts/setup.sh --test installs it)")
    return found


class HAProxy:
    """deploy/haproxy.cfg in front of `servers` (host:port each), on free loopback ports."""

    def __init__(self, servers: list[str], start_timeout: float = 20.0):
        self.directory = Path(tempfile.mkdtemp(prefix="meltybase-haproxy-"))
        self.port = dbkit.free_port()
        self.stats_port = dbkit.free_port()
        self.socket_path = self.directory / "admin.sock"
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.directory / "haproxy.cfg"
        self.config.write_text(self.render(servers))
        check = subprocess.run([haproxy_binary(), "-c", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise dbkit.SetupError(f"haproxy -c refused {self.config}:\n{check.stdout}\n{check.stderr}")
        self.log_path = self.directory / "haproxy.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([haproxy_binary(), "-db", "-f", str(self.config)], stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait(start_timeout)

    def render(self, servers: list[str]) -> str:
        text = TEMPLATE.read_text()
        text = (text.replace("@@BIND@@", f"127.0.0.1:{self.port}")
                .replace("@@STATS_BIND@@", f"127.0.0.1:{self.stats_port}")
                .replace("@@STATS_SOCKET@@", str(self.socket_path)))
        # The template lists three kernels; more or fewer become as many server lines.
        lines = [f"    server kernel{i + 1} {address}" for i, address in enumerate(servers)]
        text = re.sub(r"(?m)^    server kernel1 @@KERNEL1@@\n(    server kernel\d+ @@KERNEL\d+@@\n)*", "\n".join(lines) + "\n", text)
        # Unprivileged, in the foreground, no chroot: drop what a packaged install sets.
        text = re.sub(r"(?m)^    (user|group|chroot) .*\n", "", text)
        unfilled = [line for line in text.splitlines() if "@@" in line and not line.lstrip().startswith("#")]
        assert not unfilled, f"placeholders of deploy/haproxy.cfg not filled: {unfilled}"
        return text

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise dbkit.SetupError(f"haproxy exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    if self.socket_path.exists():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise dbkit.SetupError(f"haproxy did not listen on {self.port} within {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def command(self, line: str) -> str:
        """One command on the admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(self.socket_path))
            connection.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the kernels backend, by server name (and BACKEND)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows if row.get("pxname") == "kernels"}

    def status(self, server: str) -> str:
        """UP, DOWN, ... of one server (first word: `DOWN 1/2` while going down)."""
        return self.stats()[server]["status"].split()[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
