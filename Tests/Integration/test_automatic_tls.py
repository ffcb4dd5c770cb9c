"""`tls = "auto"` listeners: certificates created on the user's machine on first start.

No private key ships with MeltyBase: a listener with `tls = "auto"` gets an instance CA and
a server certificate made in `<data_dir>/certs` the first time `meltybase serve` starts, and
the same files on every later start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

import dbkit  # noqa: E402


def test_an_auto_tls_listener_serves_https_with_certificates_made_on_first_start():
    port = dbkit.free_port()
    kernel = dbkit.Kernel(f'[[listeners]]\nhost = "127.0.0.1"\nport = {port}\ntls = "auto"\n')
    try:
        certs = kernel.data_dir / "certs"
        for name in ("ca.key", "server.key", "admin.key"):
            assert (certs / name).stat().st_mode & 0o777 == 0o600, name
        ca = certs / "ca.pem"
        answer = requests.get(f"https://127.0.0.1:{port}/v1/system/status", verify=str(ca), timeout=10)
        assert answer.status_code == 200, answer.text
        answer = requests.get(f"https://localhost:{port}/v1/system/status", verify=str(ca), timeout=10)
        assert answer.status_code == 200
        # Without the instance CA a client refuses the certificate.
        try:
            requests.get(f"https://127.0.0.1:{port}/v1/system/status", timeout=10)
            raise AssertionError("a client without the instance CA accepted the certificate")
        except requests.exceptions.SSLError:
            pass
        first = ca.read_bytes()
    finally:
        kernel.stop()
    log = kernel.log_path.read_text(errors="replace")
    # A restart serves the same certificates (nothing is made again).
    again = dbkit.RestartedKernel(kernel)
    try:
        assert ca.read_bytes() == first
        answer = requests.get(f"https://127.0.0.1:{port}/v1/system/status", verify=str(ca), timeout=10)
        assert answer.status_code == 200
    finally:
        again.stop()
    assert "created an instance CA" not in again.log_path.read_text(errors="replace")
    assert "tls = \"auto\": created an instance CA" in log
    # Key material never reaches the log.
    key = (kernel.data_dir / "certs" / "server.key").read_text()
    body = "".join(line for line in key.splitlines() if not line.startswith("-----"))
    assert body[:40] not in log


def test_an_unknown_tls_value_is_a_located_config_error(tmp_path):
    config = tmp_path / "meltybase.toml"
    config.write_text('[[listeners]]\nhost = "127.0.0.1"\nport = 0\ntls = "yes"\n')
    done = subprocess.run(
        [str(dbkit.kernel_binary()), "serve", "--config", str(config), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")})
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "listeners.0.tls" in message and "auto" in message and "tls_certificate" in message
