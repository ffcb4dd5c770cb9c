"""docs/plugin-author-guide.md cannot rot: its one ```c block is the complete plugin an
outside author builds. This compiles that block with the guide's own `cc` command against
the real header, loads it with the guide's plugins.toml entry into a real kernel, and
exercises what the guide promises: GET /hello answered by the plugin's worker thread,
the WebSocket echo, and POST /audit whose entry (audit_async) is in the audit log."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import requests
import websocket

from instance_setup import set_up_instance
from meltybase_kernel import ROOT, MeltyBaseKernel

GUIDE = ROOT / "docs" / "plugin-author-guide.md"
INCLUDE = ROOT / "Sources" / "MeltyPluginABI" / "include"
EMAIL = "guide@example.com"
PASSWORD = "correct horse battery staple"


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE.read_text(), re.S | re.M)


def guide_plugin_source() -> str:
    blocks = fenced_blocks("c")
    assert len(blocks) == 1, f"the guide must carry exactly one ```c block (the plugin), found {len(blocks)}"
    return blocks[0]


def guide_build_command() -> list[str]:
    """The guide's `cc ... -o libhello.so hello.c` line (continuations joined)."""
    for block in fenced_blocks("sh"):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith("cc ") and "hello.c" in line:
                return shlex.split(line)
    raise AssertionError("the guide has no ```sh block with the `cc ... hello.c` build command")


def guide_plugins_toml(library: Path) -> str:
    for block in fenced_blocks("toml"):
        if "[plugins.hello]" in block:
            text, count = re.subn(r'^path = "[^"]*"', f'path = "{library}"', block, flags=re.M)
            assert count == 1, "the [plugins.hello] entry has no path line"
            return text
    raise AssertionError("the guide has no ```toml block with [plugins.hello]")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("guide-plugin")
    (directory / "hello.c").write_text(guide_plugin_source())
    command = guide_build_command()
    assert "/path/to/include" in command, f"the build command should show -I /path/to/include: {command}"
    command = [str(INCLUDE) if part == "/path/to/include" else part for part in command]
    # Stricter than the guide asks: a warning in the guide's own code is a bug in the guide.
    built = subprocess.run(command + ["-Werror"], cwd=directory, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(command)}\n{built.stderr}"
    exported = subprocess.run(["nm", "-D", "--defined-only", str(directory / "libhello.so")], capture_output=True, text=True)
    assert exported.returncode != 0 or [line.split()[-1] for line in exported.stdout.splitlines()] == ["meltybase_plugin_entry"]
    return directory / "libhello.so"


@pytest.fixture(scope="module")
def kernel(module_kernel_factory, library):
    toml = guide_plugins_toml(library) + '\n[portals.acme]\nplugins = ["hello"]\n'
    kernel = module_kernel_factory(extra_toml=toml)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if requests.get(f"{kernel.url}/p/acme/hello/hello", timeout=30).status_code == 200:
            break
        time.sleep(0.2)
    return kernel


def test_the_guide_carries_the_pointer_to_abi_15_docs():
    assert "See docs/plugin-pages-and-commands.md for Studio pages, CLI commands and health (ABI 1.5)." in GUIDE.read_text()


def test_the_plugin_loads_and_get_hello_is_answered_by_the_worker(kernel):
    response = requests.get(f"{kernel.url}/p/acme/hello/hello", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hello": "acme", "answered_by": "worker thread", "credential": {"kind": "none"}}
    # Many at once: every token is completed exactly once from the worker.
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: requests.get(f"{kernel.url}/p/acme/hello/hello", timeout=30).status_code, range(40)))
    assert statuses == [200] * 40
    missing = requests.get(f"{kernel.url}/p/acme/hello/nope", timeout=30)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_the_websocket_echoes(kernel):
    connection = websocket.create_connection(kernel.url.replace("http://", "ws://") + "/p/acme/hello/ws", timeout=30)
    try:
        for text in ("ping", "héllo", ""):
            connection.send(text)
            assert connection.recv() == text
        connection.send_binary(b"\x00\x01\x02")
        opcode, data = connection.recv_data()
        assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"\x00\x01\x02")
    finally:
        connection.close()


def test_post_audit_appends_an_entry_with_audit_async(kernel):
    token = set_up_instance(kernel, EMAIL, PASSWORD, totp=False)["pair"]["access_token"]

    response = requests.post(f"{kernel.url}/p/acme/hello/audit", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"audited": True}
    entries = requests.get(f"{kernel.url}/v1/audit", params={"action": "hello.greeted"}, timeout=30,
                           headers={"authorization": f"Bearer {token}"}).json()["entries"]
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["target"] == "acme", entry
    assert "plugin:hello" in str(entry.get("actor")), entry
    assert "plugin author guide" in str(entry.get("details")), entry
    verify = requests.get(f"{kernel.url}/v1/audit/verify", timeout=30, headers={"authorization": f"Bearer {token}"})
    assert verify.status_code == 200 and verify.json()["ok"] is True, verify.text


def test_the_kernel_logged_no_refusal_of_the_plugin(kernel):
    log = kernel.log_text()
    assert 'plugin "hello"' not in log or "not loaded" not in log, log[-3000:]
    assert "hello: started" in log
