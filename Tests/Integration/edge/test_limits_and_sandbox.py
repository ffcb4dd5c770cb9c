"""What a function may not do, through the kernel with real Deno: the CPU, memory, wall-clock
and size limits (each answered with its own error, the pool serving the next request), the
sandbox (files, environment, network, processes), isolation between portals, secrets from
the Vault, and deploys that are refused with the file and line, leaving nothing behind."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import httpx
import pytest

from fnkit import admin_headers, deploy, deploy_response, functions_url, invoke, wait_for_log

TIGHT = {"cpu_soft_ms": 200, "cpu_hard_ms": 500, "memory_mb": 96, "wall_clock_seconds": 2}

LIMITED = """
Deno.serve(async (req) => {
  const what = new URL(req.url).pathname.split("/").pop();
  if (what === "loop") { while (true) {} }
  if (what === "heap") { const keep = []; while (true) keep.push(new Array(1e6).fill(Math.random())); }
  if (what === "buffers") { const keep = []; while (true) { const b = new Uint8Array(8 << 20); b.fill(1); keep.push(b); } }
  if (what === "hang") { await new Promise(() => {}); }
  if (what === "big") { return new Response("x".repeat(300_000)); }
  if (what === "throw") { throw new Error("boom from the function"); }
  return new Response("fine");
});
"""


@pytest.fixture(scope="module")
def limited(portal):
    deploy(portal, "limited", LIMITED, limits={**TIGHT, "max_response_bytes": 50_000, "max_request_bytes": 50_000})
    return portal


def assert_breach(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body


def test_an_infinite_loop_is_stopped_at_the_cpu_limit_and_the_pool_recovers(limited):
    assert_breach(invoke(limited, "limited", "/loop"), 546, "cpu_time_limit")
    assert invoke(limited, "limited", "/ok").text == "fine"


@pytest.mark.parametrize("bomb", ["heap", "buffers"])
def test_a_memory_bomb_is_stopped_at_the_memory_limit_and_the_pool_recovers(limited, bomb):
    assert_breach(invoke(limited, "limited", f"/{bomb}"), 547, "memory_limit")
    assert invoke(limited, "limited", "/ok").text == "fine"


def test_a_request_that_never_answers_hits_the_wall_clock(limited):
    assert_breach(invoke(limited, "limited", "/hang"), 504, "wall_clock_limit")
    assert invoke(limited, "limited", "/ok").text == "fine"


def test_sizes_are_bounded_both_ways(limited):
    assert_breach(invoke(limited, "limited", "/big"), 502, "response_too_large")
    assert_breach(invoke(limited, "limited", "/ok", content=b"x" * 60_000), 413, "request_too_large")
    assert invoke(limited, "limited", "/ok", content=b"x" * 1000).text == "fine"


def test_a_response_that_passes_the_limit_after_its_head_is_cut_off(portal):
    # The first 64 KiB went out with the head; past the limit the connection ends without
    # the body's end, so no client takes a truncated body for a whole one, and the log says why.
    deploy(portal, "gusher", 'Deno.serve(() => new Response("y".repeat(400_000)))', limits={"max_response_bytes": 100_000})
    with pytest.raises(httpx.RemoteProtocolError):
        invoke(portal, "gusher")
    wait_for_log(portal, "gusher", lambda line: "more than 100000 bytes" in line["message"] and line["level"] == "error")


def test_a_thrown_error_is_a_500_naming_it(limited):
    response = invoke(limited, "limited", "/throw")
    assert response.status_code == 500
    assert response.json()["code"] == "function_error" and "boom from the function" in response.json()["message"]


SANDBOX = """
Deno.serve(async (req) => {
  const what = new URL(req.url).searchParams.get("try");
  const attempt = async (work: () => Promise<unknown> | unknown) => {
    try { return "allowed:" + String(await work()); } catch (error) { return "denied:" + (error as Error).name; }
  };
  switch (what) {
    case "file": return new Response(await attempt(() => Deno.readTextFile("/etc/hostname")));
    case "own": return new Response(await attempt(() => Deno.readTextFile(new URL("./data.txt", import.meta.url))));
    case "write": return new Response(await attempt(() => Deno.writeTextFile(new URL("./new.txt", import.meta.url), "x")));
    case "env": return new Response(await attempt(() => Deno.env.get("HOME") ?? Deno.env.get("PATH")));
    case "declared": return new Response(await attempt(() => Deno.env.get("MODE")));
    case "net": return new Response(await attempt(() => fetch("http://127.0.0.1:9/")));
    case "spawn": return new Response(await attempt(() => new Deno.Command("/bin/true").output()));
    case "ffi": return new Response(await attempt(() => Deno.dlopen("libc.so.6", {})));
    case "other": return new Response(await attempt(() => Deno.readTextFile(req.headers.get("x-path")!)));
  }
  return new Response("?");
});
"""


@pytest.fixture(scope="module")
def sandboxed(portal):
    deploy(portal, "sandbox", {"index.ts": SANDBOX, "data.txt": "own data"}, env={"MODE": "test"}, allow_net=["example.com"])
    return portal


@pytest.mark.parametrize("attempt", ["file", "write", "env", "net", "spawn", "ffi"])
def test_the_sandbox_denies(sandboxed, attempt):
    answer = invoke(sandboxed, "sandbox", f"?try={attempt}")
    assert answer.status_code == 200 and answer.text.startswith("denied:"), answer.text


def test_the_sandbox_allows_the_functions_own_files_and_declared_variables(sandboxed):
    assert invoke(sandboxed, "sandbox", "?try=own").text == "allowed:own data"
    assert invoke(sandboxed, "sandbox", "?try=declared").text == "allowed:test"


def test_portals_do_not_see_each_others_secrets_files_or_workers(kernel, new_portal):
    alpha, beta = new_portal("alpha"), new_portal("beta")
    stored = httpx.post(f"{kernel.url}/p/{beta.name}/vault/v1/secrets", headers=admin_headers(beta),
                        json={"name": "SHARED_NAME", "value": "beta's secret"}, timeout=30)
    assert stored.status_code in (200, 201), stored.text
    deploy(beta, "keeper", {"index.ts": 'let hits = 0; Deno.serve(() => new Response(`${Deno.env.get("SHARED_NAME")}:${++hits}`))',
                            "private.txt": "beta only"}, secrets=["SHARED_NAME"])
    assert invoke(beta, "keeper").text == "beta's secret:1"
    # Alpha lists the same secret name: its own Vault has none, so the deploy is refused.
    refused = deploy_response(alpha, "keeper", {"index.ts": 'Deno.serve(() => new Response(Deno.env.get("SHARED_NAME") ?? "none"))'},
                              secrets=["SHARED_NAME"])
    assert refused.status_code == 503 and refused.json()["code"] == "secret_unavailable", refused.text
    # Alpha's function of the same name is its own worker: beta's counter does not move.
    deploy(alpha, "keeper", 'let hits = 0; Deno.serve(() => new Response(`alpha:${++hits}`))')
    assert invoke(alpha, "keeper").text == "alpha:1"
    assert invoke(beta, "keeper").text == "beta's secret:2"
    # Beta's files, read from alpha's function by path, are out of its sandbox.
    deploy(alpha, "reader", SANDBOX)
    beta_file = next((kernel.directory / ".meltybase" / "edge" / "portals" / beta.name / "keeper").glob("*/private.txt"))
    answer = invoke(alpha, "reader", "?try=other", headers={"x-path": str(beta_file)})
    assert answer.text == "denied:NotCapable" or answer.text.startswith("denied:"), answer.text
    # And alpha's keys do not open beta's functions.
    assert invoke(beta, "keeper", key=alpha.anon).status_code == 401


@pytest.mark.parametrize(
    ("files", "code", "file", "line"),
    [
        ({"index.ts": "Deno.serve(() => {\n  return new Response(\"x\"\n});\n"}, "syntax_error", "index.ts", 3),
        ({"index.ts": 'import { f } from "./lib.ts";\nDeno.serve(() => new Response(f()));\n',
          "lib.ts": "export function f(): string {\n  const n: number = \"text\";\n  return String(n);\n}\n"}, "type_error", "lib.ts", 2),
        ({"index.ts": 'import { serve } from "https://deno.land/std@0.177.0/http/server.ts";\nserve(() => new Response("x"));\n'},
         "remote_import", "index.ts", 1),
        ({"index.ts": "export const notAHandler = 1;\n"}, "missing_export", None, None),
    ],
    ids=["syntax", "type", "remote", "no-handler"],
)
def test_bad_deploys_are_refused_with_the_location_and_nothing_is_half_deployed(portal, files, code, file, line):
    deploy(portal, "stable", 'Deno.serve(() => new Response("v1"))')
    before = httpx.get(functions_url(portal, "stable"), headers=admin_headers(portal), timeout=30).json()
    refused = deploy_response(portal, "stable", files)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["code"] == code, body
    if file is not None:
        assert body["errors"][0]["file"] == file and body["errors"][0]["line"] == line, body
    after = httpx.get(functions_url(portal, "stable"), headers=admin_headers(portal), timeout=30).json()
    assert after["active_version"] == before["active_version"]
    assert len(after["versions"]) == len(before["versions"])
    assert invoke(portal, "stable").text == "v1"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "x", "files": {}},
        {"name": "Bad Name", "files": {"index.ts": ""}},
        {"name": "x", "files": {"../escape.ts": "export default () => new Response()"}},
        {"name": "x", "files": {"index.ts": "a\u0000b"}},
        {"name": "x", "files": {"index.ts": "export default () => new Response()"}, "limits": {"memory_mb": 10 ** 30}},
        {"name": "x", "files": {"index.ts": "export default () => new Response()"}, "limits": {"cpu_hard_ms": -1}},
        {"name": "x", "files": {"index.ts": "export default () => new Response()"}, "allow_net": ["http://evil/"]},
        {"name": "x'; DROP TABLE edge.versions; --", "files": {"index.ts": "export default () => new Response()"}},
        {"name": "x", "files": {"index.ts": "export default () => new Response()"}, "surprise": True},
    ],
)
def test_malformed_deploys_are_4xx(portal, body):
    response = httpx.post(functions_url(portal), headers=admin_headers(portal), json=body, timeout=60)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"]


def test_a_deploy_body_that_is_not_json_is_a_400(portal):
    for raw in [b"", b"{", b"\xff\xfe", b"[]", b'"text"']:
        response = httpx.post(functions_url(portal), headers=admin_headers(portal), content=raw, timeout=30)
        assert response.status_code == 400, (raw, response.text)


def worker_uids(portal) -> dict[int, int]:
    """The runner processes of this kernel's workers and their real user ids."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if any(part.endswith(b"runner.js") for part in command) and any(str(portal.kernel.directory).encode() in p for p in command):
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            found[int(entry.name)] = int(uid_line.split()[1])
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root kernel switches its workers to another account")
def test_workers_of_a_root_kernel_run_as_an_unprivileged_account(portal):
    deploy(portal, "whoami", 'Deno.serve(() => new Response("ok"))')
    assert invoke(portal, "whoami").text == "ok"
    uids = worker_uids(portal)
    assert uids, "no worker process of this kernel found"
    assert 0 not in uids.values(), uids
    assert {pwd.getpwuid(uid).pw_name for uid in uids.values()} == {"meltybase-edge"}
