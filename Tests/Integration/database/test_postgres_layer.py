"""The Postgres layer under the REST API: no thread is parked per query, and a request the
client abandons (disconnect) or the kernel gives up on (504) has its query cancelled in
Postgres, as `pg_stat_activity` shows.

Each test runs on a kernel of its own (`pool_size = 200` needs its own Postgres limits;
the timeout test needs a short `request_timeout_seconds`). `pg_stat_activity` is read as the
embedded cluster's superuser over its unix socket with psql: a portal role cannot see other
roles' queries.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

SLEEPY = "test_sleepy_call"


def active_sleepers(kernel) -> int:
    return int(kernel.superuser_sql(f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                    f"AND query LIKE '%{SLEEPY}%' AND pid <> pg_backend_pid()"))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def make_sleepy(portal, seconds: float) -> None:
    portal.setup(f"""
        CREATE OR REPLACE FUNCTION public.{SLEEPY}() RETURNS int LANGUAGE sql AS
          $$ SELECT 1 FROM pg_sleep({seconds}) $$;
        GRANT EXECUTE ON FUNCTION public.{SLEEPY}() TO anon;
        NOTIFY pgrst, 'reload schema';
    """)
    # The schema cache reloads on the notification; wait until the API lists the function.
    wait_for(lambda: f"/rpc/{SLEEPY}" in portal.rest("GET", "", key=portal.anon).json().get("paths", {}), 30,
             "the function in the API")


async def http_exchange(reader, writer, request: bytes) -> int:
    """Sends one HTTP/1.1 request on an open connection; returns the status (body read whole)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
    return int(head.split(b" ", 2)[1])


async def concurrent_calls(portal, count: int, sampler) -> tuple[float, list[int]]:
    """`count` concurrent POST rpc calls, one keep-alive connection each; returns the wall
    time and every status. Raw asyncio streams: httpx's pool costs seconds at 200 connections."""
    url = httpx.URL(portal.rest_url)
    headers = "".join(f"{name}: {value}\r\n" for name, value in portal.headers(portal.anon).items())
    warm = (f"GET {url.path}/ HTTP/1.1\r\nHost: {url.host}\r\n{headers}\r\n").encode()
    call = (f"POST {url.path}/rpc/{SLEEPY} HTTP/1.1\r\nHost: {url.host}\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}").encode()
    connections = [await asyncio.open_connection(url.host, url.port) for _ in range(count)]
    try:
        # The connections are open and served once, so the measurement is the queries.
        await asyncio.gather(*(http_exchange(reader, writer, warm) for reader, writer in connections))
        stop = threading.Event()
        sampling = threading.Thread(target=sampler, args=(stop,), daemon=True)
        sampling.start()
        started = time.monotonic()
        statuses = await asyncio.gather(*(http_exchange(reader, writer, call) for reader, writer in connections))
        elapsed = time.monotonic() - started
        stop.set()
        sampling.join(5)
        return elapsed, list(statuses)
    finally:
        for _, writer in connections:
            writer.close()


def worker_pid(kernel) -> int:
    """The kernel worker's pid (`meltybase serve` is a supervisor with one worker child)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == kernel.process.pid and "--worker" in (entry / "cmdline").read_text():
                    return int(entry.name)
            except (OSError, ValueError):
                continue
    raise AssertionError("no kernel worker process found")


def test_200_concurrent_sleeping_queries_need_no_thread_each(kernel_factory):
    kernel = kernel_factory("[plugins.database.config]\npool_size = 200\nmax_waiting = 1000\n")
    portal = kernel.create_portal("threads")
    make_sleepy(portal, 0.3)
    pid = worker_pid(kernel)
    # Warm up: every pool connection opened once.
    _, warm = asyncio.run(concurrent_calls(portal, 200, lambda stop: None))
    assert warm.count(200) == 200, f"warm-up statuses: {sorted(set(warm))}"
    time.sleep(1.0)
    idle = thread_count(pid)
    peak = [idle]

    def sample(stop: threading.Event) -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], thread_count(pid))
            time.sleep(0.01)

    elapsed, statuses = asyncio.run(concurrent_calls(portal, 200, sample))
    assert statuses.count(200) == 200, f"statuses: {sorted(set(statuses))}"
    print(f"200 concurrent 0.3 s calls: {elapsed:.2f} s wall, kernel threads {idle} idle, {peak[0]} at peak")
    # Blocking libpq took 9.3 s here (about six queries at a time, one thread each).
    assert elapsed < 1.0, f"200 concurrent 0.3 s queries took {elapsed:.2f} s"
    assert peak[0] - idle <= 8, f"threads went from {idle} to {peak[0]} during the calls"


def test_a_client_that_disconnects_has_its_query_cancelled(kernel_factory):
    kernel = kernel_factory()
    portal = kernel.create_portal("cancel")
    make_sleepy(portal, 30)
    assert active_sleepers(kernel) == 0
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{portal.rest_url}/rpc/{SLEEPY}", json={}, headers=portal.headers(portal.anon),
                   timeout=httpx.Timeout(10.0, read=1.5))
    # The client has gone (httpx closed the socket): the query stops well before its 30 s.
    wait_for(lambda: active_sleepers(kernel) == 0, 10, "the abandoned query to be cancelled")
    # The pool's connection was not lost: the portal still answers.
    assert portal.rest("GET", "", key=portal.anon).status_code == 200


def test_a_request_past_its_timeout_has_its_query_cancelled(kernel_factory):
    kernel = kernel_factory("[kernel]\nrequest_timeout_seconds = 1.5\n")
    portal = kernel.create_portal("timeout")
    make_sleepy(portal, 30)
    seen_active = []

    def watch() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not seen_active:
            if active_sleepers(kernel) > 0:
                seen_active.append(True)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    response = httpx.post(f"{portal.rest_url}/rpc/{SLEEPY}", json={}, headers=portal.headers(portal.anon),
                          timeout=httpx.Timeout(20.0))
    watcher.join(10)
    assert response.status_code == 504, response.text
    assert response.json()["code"] == "plugin_timeout"
    assert seen_active, "the query never showed as active in pg_stat_activity"
    wait_for(lambda: active_sleepers(kernel) == 0, 10, "the timed-out query to be cancelled")
