"""Starts the real `meltybase serve` binary for integration tests.

`MeltyBaseKernel(extra_toml=..., env=...)` writes a plugins.toml into a fresh temporary
directory (data directory inside it, a free port on 127.0.0.1, the example plugins),
starts the kernel in embedded mode (its own Postgres and Redis; as root the kernel runs
Postgres through setpriv), waits until it listens, and `stop()` sends SIGTERM and waits
for the graceful shutdown. The binary is $MELTYBASE_BIN, else .build/debug/meltybase.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def kernel_binary() -> Path:
    """The kernel binary the tests run."""
    given = os.environ.get("MELTYBASE_BIN")
    binary = Path(given) if given else ROOT / ".build" / "debug" / "meltybase"
    if not binary.exists():
        raise RuntimeError(f"{binary} does not exist: run `swift build` (or scripts/test) first")
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


BASE_TOML = """\
[kernel]
data_dir = "{data_dir}"
log_level = "info"

[[listeners]]
host = "127.0.0.1"
port = {port}

[plugins.echo-c]
path = "libecho_c.so"
required = false

[plugins.echo-swift]
path = "libEchoSwiftPlugin.so"
required = false
"""

# The Database plugin and the Vault (both required), with rate limits no test reaches.
DATABASE_AND_VAULT_TOML = """
[plugins.database]
path = "libDatabasePlugin.so"
required = true

[plugins.vault]
path = "libVaultPlugin.so"
required = true

[rate_limit]
per_client = { rate = 100000, burst = 100000 }
per_portal = { rate = 100000, burst = 100000 }
"""


class MeltyBaseKernel:
    """One running kernel: `url`, `port`, `directory`, `data_dir`, `log_text()`."""

    def __init__(self, extra_toml: str = "", env: dict[str, str] | None = None, start_timeout: float = 120.0):
        self.directory = Path(tempfile.mkdtemp(prefix="meltybase-it-"))
        # The kernel hands the data directory to an unprivileged Postgres account when root.
        os.chmod(self.directory, 0o755)
        self.data_dir = self.directory / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.directory / "plugins.toml"
        self.config.write_text(BASE_TOML.format(data_dir=self.data_dir, port=self.port) + "\n" + extra_toml)
        self.log_path = self.directory / "kernel.log"
        self._log = open(self.log_path, "wb")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
        environment.update(env or {})
        self.binary = kernel_binary()
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment, cwd=self.directory,
        )
        self._wait_until_listening(start_timeout)

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"meltybase exited with {self.process.returncode} before listening; log:\n{self.log_text()}")
            try:
                if requests.get(self.url + "/v1/system/status", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"meltybase did not listen within {timeout} s; log:\n{self.log_text()}")

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then waits for the graceful shutdown (SIGKILL after `timeout`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def vendor_license(directory: Path, tier: str = "commercial", seats: int = 20,
                   owner: str = "owner@example.com") -> tuple[str, str]:
    """A vendor key pair made by `meltybase license keygen` in `directory` (once) and a
    license it signs; returns (public key hex, license string)."""
    binary = str(kernel_binary())
    if not (directory / "license-signing.key").exists():
        subprocess.run([binary, "license", "keygen", "--out", str(directory)], capture_output=True, text=True, check=True, timeout=60)
    public_key = (directory / "license-signing.pub").read_text().strip()
    issued = subprocess.run([binary, "license", "issue", "--key", str(directory / "license-signing.key"),
                             "--owner", owner, "--tier", tier, "--seats", str(seats)],
                            capture_output=True, text=True, check=True, timeout=60)
    return public_key, issued.stdout.strip()
