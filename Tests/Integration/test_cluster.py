"""Three kernels behind HAProxy on one Postgres and one Redis (issue 18, deploy/haproxy.cfg).

Kernel 1 owns the embedded Postgres and Redis; kernels 2 and 3 point `[database] url` and
`[redis] url` at them and use kernel 1's key set (`[kernel] keys_dir`). All three run
the Database, Realtime and Echo (Swift) plugins with the same plugins.toml otherwise.
HAProxy runs `deploy/haproxy.cfg` with its placeholders filled and tells which kernel
answered in `X-MeltyBase-Server`; its stats socket gives per-kernel counts and states.

What is checked: requests spread over all three kernels; portal changes made through one
kernel are served by the others; a per-portal rate limit is one bucket for the cluster;
Realtime broadcast and presence cross kernels through the proxy; and `kill -9` of a kernel
under a write load loses no acknowledged insert, and once HAProxy marks it down every
request succeeds. Counts are printed (run with -s to see them); no time is asserted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "realtime"))

import clusterkit  # noqa: E402
import dbkit  # noqa: E402
import rtkit  # noqa: E402

# The same on every kernel: one portal whose bucket (20 requests, then one per 100 s) is
# small enough to count, on a plugin that needs no database.
CLUSTER_TOML = rtkit.REALTIME_TOML + """
[plugins.echo-swift]
path = "libEchoSwiftPlugin.so"

[plugins.echo-swift.config]
greeting = "hello from the cluster"

[portals.limited]
plugins = ["echo-swift"]
rate_limit = { rate = 0.01, burst = 20 }
"""
BURST = 20
WRITERS = 4


def start(extra: str = "", prepare=None) -> dbkit.Kernel:
    try:
        return dbkit.Kernel(CLUSTER_TOML + extra, prepare=prepare)
    except dbkit.SetupError as error:
        pytest.fail(f"cannot start a kernel of the cluster: {error}", pytrace=False)


def on(kernel, portal: dbkit.Portal) -> dbkit.Portal:
    """The same portal, addressed through another kernel (or the proxy)."""
    return dbkit.Portal(kernel, portal.name, portal.anon, portal.service)


def served_by(response: httpx.Response) -> str:
    name = response.headers.get(clusterkit.SERVED_BY)
    assert name, f"HAProxy did not say which kernel answered: {dbkit.describe(response)}"
    return name


@pytest.fixture(scope="module")
def cluster():
    kernels: list[dbkit.Kernel] = []
    proxy = None
    killed: set[int] = set()
    try:
        first = start(clusterkit.KERNEL_TABLE)
        kernels.append(first)
        for _ in range(2):
            kernels.append(start(clusterkit.joined_toml(first)))
        portal = first.create_portal("cluster", plugins="database,realtime")
        for kernel in kernels[1:]:
            kernel._wait_for_portal(on(kernel, portal))
        proxy = clusterkit.HAProxy([f"127.0.0.1:{kernel.port}" for kernel in kernels])
        yield {"kernels": kernels, "proxy": proxy, "portal": portal,
               "proxied": on(clusterkit.Endpoint(proxy.url), portal), "killed": killed}
    finally:
        failures = []
        if proxy is not None:
            proxy.stop()
        # Kernel 1 owns Postgres and Redis: it stops last.
        for index, kernel in reversed(list(enumerate(kernels))):
            if index in killed:
                kernel.stop()
                kernel.cleanup()
                continue
            failures += dbkit.stop_and_check(kernel)
        if proxy is not None and not failures:
            proxy.cleanup()
        assert not failures, "\n".join(failures)


def test_requests_spread_over_all_kernels(cluster):
    proxy, proxied = cluster["proxy"], cluster["proxied"]
    before = proxy.stats()
    answered: Counter[str] = Counter()
    with httpx.Client(timeout=dbkit.TIMEOUT) as http:
        for _ in range(30):
            response = http.get(f"{proxy.url}/v1/system/status")
            assert response.status_code == 200, dbkit.describe(response)
            assert response.json()["pulse"] == "active"
            answered[served_by(response)] += 1
    for _ in range(30):
        response = proxied.rest("GET", "")
        assert response.status_code == 200, dbkit.describe(response)
        answered[served_by(response)] += 1
    after = proxy.stats()
    counted = {name: int(after[name]["hrsp_2xx"]) - int(before[name]["hrsp_2xx"]) for name in ("kernel1", "kernel2", "kernel3")}
    print(f"\nrequests per kernel (X-MeltyBase-Server): {dict(sorted(answered.items()))}; "
          f"2xx per kernel in HAProxy's stats: {counted}")
    assert set(answered) == {"kernel1", "kernel2", "kernel3"}, answered
    assert sum(answered.values()) == 60
    assert counted == dict(answered), "the stats socket and the response header disagree"


def test_portal_changes_cross_kernels(cluster):
    one, two, three = cluster["kernels"]
    # Created through kernel 2's command line, served by kernels 3 and 1.
    created = two.create_portal("crossing", plugins="database")
    on_three, on_one = on(three, created), on(one, created)
    three._wait_for_portal(on_three)
    one._wait_for_portal(on_one)
    # DDL through kernel 1's SQL console reaches kernel 3's REST schema cache.
    on_one.sql("create table notes (id int primary key, body text); insert into notes values (1, 'from kernel 1')")
    rows = on_three.wait_for_rest("notes?select=body").json()
    assert rows == [{"body": "from kernel 1"}]
    # Disabled through kernel 3, refused by kernel 1; enabled through kernel 1, served by kernel 2.
    result = three.cli("portal", "disable", created.name, "database")
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 30
    while True:
        refused = on_one.rest("GET", "notes")
        if refused.status_code == 404 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert refused.status_code == 404, dbkit.describe(refused)
    assert dbkit.error_json(refused)["code"] == "plugin_not_enabled", dbkit.describe(refused)
    result = one.cli("portal", "enable", created.name, "database")
    assert result.returncode == 0, result.stderr
    on_two = on(two, created)
    two._wait_for_portal(on_two)
    assert on_two.wait_for_rest("notes?select=body").json() == [{"body": "from kernel 1"}]


def test_a_portal_rate_limit_is_one_bucket_for_the_cluster(cluster):
    kernels = cluster["kernels"]
    admitted: Counter[int] = Counter()
    refused: Counter[int] = Counter()
    with httpx.Client(timeout=dbkit.TIMEOUT) as http:
        # Round robin over the kernels, addressed directly: 3 x the burst in all.
        for n in range(3 * BURST):
            index = n % 3
            response = http.post(f"{kernels[index].url}/p/limited/echo-swift/echo", content=b"hi")
            if response.status_code == 429:
                body = dbkit.error_json(response)
                assert body["code"] == "rate_limited", dbkit.describe(response)
                assert response.headers.get("retry-after"), dbkit.describe(response)
                refused[index] += 1
            else:
                assert response.status_code == 200, dbkit.describe(response)
                admitted[index] += 1
    total = sum(admitted.values())
    print(f"\nrate limit burst {BURST} on 3 kernels: admitted per kernel {dict(admitted)}, refused per kernel {dict(refused)}")
    # One shared bucket: the burst (plus at most one token refilled at 0.01/s), not 3 x.
    assert BURST <= total <= BURST + 1, f"admitted {total} of {3 * BURST}: {dict(admitted)}"
    assert all(refused[index] > 0 for index in range(3)), "every kernel refuses once the shared bucket is empty"


def test_broadcast_and_presence_cross_kernels_through_the_proxy(cluster):
    proxied = cluster["proxied"]

    async def scenario():
        # Connect through HAProxy until two sockets are served by different kernels.
        sockets = []
        by_kernel: dict[str, object] = {}
        try:
            for _ in range(6):
                socket = await rtkit.client(proxied)
                sockets.append(socket)
                kernel = socket._ws_connection.response.headers.get(clusterkit.SERVED_BY)
                assert kernel, "HAProxy did not say which kernel took the WebSocket"
                by_kernel.setdefault(kernel, socket)
                if len(by_kernel) == 2:
                    break
            assert len(by_kernel) == 2, f"all WebSockets went to {list(by_kernel)}"
            (name_a, on_a), (name_b, on_b) = by_kernel.items()
            print(f"\nrealtime clients on {name_a} and {name_b}")
            sockets.remove(on_b)
            await rtkit.presence_and_broadcast_cross(on_a, on_b, "through-proxy", {"from": name_b})
        finally:
            for socket in sockets:
                await socket.close()

    asyncio.run(scenario())


def kill_kernel(kernel: dbkit.Kernel) -> None:
    """kill -9 of a kernel: its supervisor and its worker (which runs in its own group)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if parent == kernel.process.pid and b"--worker" in command:
            workers.append(int(entry.name))
    assert workers, "the kernel's worker process was not found"
    os.killpg(kernel.process.pid, signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kernel.process.wait()


def test_kill_9_of_a_kernel_under_writes_loses_no_acknowledged_insert(cluster):
    proxy, proxied, portal = cluster["proxy"], cluster["proxied"], cluster["portal"]
    one, _, three = cluster["kernels"]
    on(one, portal).setup("create table writes (id text primary key)", "writes?limit=1")
    for kernel in cluster["kernels"]:
        on(kernel, portal).wait_for_rest("writes?limit=1")
    stop = threading.Event()
    marked_down_at: list[float] = []
    # (sent at, id, status or None for a transport error, kernel or error text)
    outcomes: list[tuple[float, str, int | None, str]] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(30.0)) as http:
            headers = {**proxied.headers(), "Prefer": "return=minimal"}
            n = 0
            while not stop.is_set():
                n += 1
                row = f"w{number}-{n}-{uuid.uuid4().hex[:6]}"
                sent = time.monotonic()
                try:
                    response = http.post(f"{proxied.rest_url}/writes", json={"id": row}, headers=headers)
                    outcome = (sent, row, response.status_code, response.headers.get(clusterkit.SERVED_BY, response.text[:200]))
                except httpx.HTTPError as error:
                    outcome = (sent, row, None, repr(error))
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=writer, args=(number,), daemon=True) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    killed_at = time.monotonic()
    kill_kernel(three)
    cluster["killed"].add(2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proxy.status("kernel3") in ("DOWN", "MAINT"):
            marked_down_at.append(time.monotonic())
            break
        time.sleep(0.05)
    assert marked_down_at, f"HAProxy did not mark kernel3 down: {proxy.stats()['kernel3']}"
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join(60)

    acknowledged = {row for _, row, status, _ in outcomes if status is not None and 200 <= status < 300}
    failed = [(row, status, detail) for _, row, status, detail in outcomes if status is None or status >= 300]
    after_down = [outcome for outcome in outcomes if outcome[0] > marked_down_at[0]]
    before_kill = Counter(detail for sent, _, status, detail in outcomes if sent < killed_at and status and status < 300)
    stored = {row[0] for row in on(one, portal).sql_rows("select id from writes")}
    print(f"\nkill -9 under {WRITERS} writers: {len(outcomes)} inserts sent, {len(acknowledged)} acknowledged "
          f"(per kernel before the kill: {dict(before_kill)}), {len(failed)} failed: {failed}; "
          f"{len(after_down)} sent after HAProxy marked kernel3 down "
          f"({marked_down_at[0] - killed_at:.2f} s after the kill), "
          f"{sum(1 for o in after_down if o[2] is not None and o[2] < 300)} of them acknowledged; "
          f"{len(stored - acknowledged)} rows stored whose answer was lost")
    assert len(acknowledged) > 50, "too few writes to mean anything"
    assert "kernel3" in before_kill, "kernel3 took no writes before the kill"
    assert acknowledged <= stored, f"acknowledged but missing: {sorted(acknowledged - stored)[:20]}"
    # At most the requests in flight on the killed kernel fail: one per writer.
    assert len(failed) <= WRITERS, failed
    assert after_down, "no request was sent after kernel3 was marked down"
    assert all(status is not None and 200 <= status < 300 and detail != "kernel3"
               for _, _, status, detail in after_down), [o for o in after_down if o[2] is None or o[2] >= 300]
