"""A root kernel whose Edge work folder lies below a folder the worker account cannot enter
(a checkout in /root, say) keeps unpacked functions where that account can read them."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "database"))

import dbkit  # noqa: E402
from conftest import EDGE_TOML, write_master_key  # noqa: E402
from fnkit import deploy, invoke  # noqa: E402


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root kernel runs its workers as another account")
def test_functions_run_when_the_work_folder_is_closed_to_the_worker_account():
    closed = Path(tempfile.mkdtemp(prefix="meltybase-closed-"))
    closed.chmod(0o700)
    kernel = dbkit.Kernel(extra_toml=EDGE_TOML + f'work_dir = "{closed}/edge"\n', prepare=write_master_key)
    try:
        portal = kernel.create_portal("closed", plugins="database,vault,edge")
        deploy(portal, "reachable", {"index.ts": 'Deno.serve(async () => new Response(await Deno.readTextFile(new URL("./data.txt", import.meta.url))))',
                                     "data.txt": "read by the worker account"})
        assert invoke(portal, "reachable").text == "read by the worker account"
        relocated = Path("/var/lib/meltybase-edge") / hashlib.sha256(f"{closed}/edge".encode()).hexdigest()[:16]
        assert f"functions are unpacked in {relocated}" in kernel.log_text()
        assert any(relocated.glob("portals/*/reachable/*/data.txt"))
    finally:
        failures = dbkit.stop_and_check(kernel)
        shutil.rmtree(Path("/var/lib/meltybase-edge") / hashlib.sha256(f"{closed}/edge".encode()).hexdigest()[:16], ignore_errors=True)
        shutil.rmtree(closed, ignore_errors=True)
        assert not failures, "\n".join(failures)
