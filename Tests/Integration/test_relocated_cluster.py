"""As root, a data directory the unprivileged Postgres account cannot enter gets its cluster
under /var/lib/meltybase, in a folder named by the data directory's `relocated-cluster`
file. A data directory deleted and made again at the same path starts a new cluster: the
old one's secrets were sealed with keys that went with the deleted directory, and the
kernel would (rightly) refuse to start on them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

import dbkit  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="relocation happens only when the kernel runs as root")


def serve_until_pulse(config: Path, data: Path, port: int, log: Path) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    process = subprocess.Popen([str(dbkit.kernel_binary()), "serve", "--config", str(config), "--data-dir", str(data), "--port", str(port)],
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=environment, cwd=config.parent)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/system/status", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no pulse within 120 s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=90)


def test_a_data_directory_made_again_at_the_same_path_gets_a_new_cluster():
    closed = Path(tempfile.mkdtemp(prefix="meltybase-closed-"))
    os.chmod(closed, 0o700)  # the Postgres account cannot enter it
    config = closed / "meltybase.toml"
    config.write_text('[[listeners]]\nhost = "127.0.0.1"\nport = 0\n\n[backup]\nbase_backup_interval_hours = 0\n')
    data = closed / "data"
    folders: list[str] = []
    try:
        for attempt in range(2):
            process = serve_until_pulse(config, data, dbkit.free_port(), closed / f"kernel-{attempt}.log")
            try:
                folder = (data / "relocated-cluster").read_text().strip()
                assert folder.startswith("/var/lib/meltybase/") and Path(folder, "postgres", "PG_VERSION").is_file(), folder
                folders.append(folder)
            finally:
                stop(process)
            if attempt == 0:
                # The same directory starts on the same cluster again.
                again = serve_until_pulse(config, data, dbkit.free_port(), closed / "kernel-again.log")
                stop(again)
                assert (data / "relocated-cluster").read_text().strip() == folders[0]
                shutil.rmtree(data)
        assert folders[0] != folders[1], "a new data directory reused its predecessor's cluster"
        assert "could not start" not in (closed / "kernel-1.log").read_text(errors="replace")
    finally:
        shutil.rmtree(closed, ignore_errors=True)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
