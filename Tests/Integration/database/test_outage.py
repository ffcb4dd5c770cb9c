"""The embedded Postgres dies (kill -9 of the postmaster) under load.

While threads read and write through REST, the postmaster is killed; the kernel's
supervisor starts it again. Every answer in the meantime is a success or a 503 with
Retry-After (never another 5xx, never a hang: clients time out after 10 s), requests
succeed again afterwards without restarting the kernel, and every write that was
acknowledged with 201 is in the table. Runs on a kernel of its own.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from dbkit import describe

RECOVERY_TIMEOUT = 120.0


class Load:
    def __init__(self, portal, threads: int = 4):
        self.portal = portal
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple] = []  # (time, kind, status or exception, retry-after, body)
        self.acknowledged: list[int] = []
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(threads)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a load thread hangs"

    def run(self, number: int):
        portal = self.portal
        headers = portal.headers(portal.anon)
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                row = 1_000_000 * (number + 1) + i
                kind = "get" if i % 2 else "post"
                try:
                    if kind == "get":
                        response = client.get(f"{portal.rest_url}/t", params={"id": f"eq.{i % 100 + 1}"}, headers=headers)
                    else:
                        response = client.post(f"{portal.rest_url}/t", json={"id": row, "v": "w"},
                                               headers={**headers, "Prefer": "return=minimal"})
                    entry = (time.monotonic(), kind, response.status_code, response.headers.get("retry-after"),
                             response.text[:300])
                    if kind == "post" and response.status_code == 201:
                        with self.lock:
                            self.acknowledged.append(row)
                except httpx.HTTPError as error:
                    entry = (time.monotonic(), kind, repr(error), None, "")
                with self.lock:
                    self.results.append(entry)
                time.sleep(0.005)


def wait_for_restart(kernel, old_pid: int) -> int:
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        pid = kernel.postmaster_pid()
        if pid and pid != old_pid:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"the embedded Postgres was not restarted within {RECOVERY_TIMEOUT} s; "
                         f"kernel log:\n{kernel.log_tail()}")


def wait_for_success(portal) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        try:
            last = portal.rest("GET", "t", key=portal.anon, params={"id": "eq.1"})
            if last.status_code == 200 and last.json() == [{"id": 1, "v": "v"}]:
                return
        except httpx.HTTPError as error:
            last = error
        time.sleep(0.2)
    raise AssertionError(f"REST did not recover within {RECOVERY_TIMEOUT} s: "
                         f"{describe(last) if isinstance(last, httpx.Response) else last!r}")


def test_postgres_killed_under_load(kernel_factory):
    kernel = kernel_factory()
    portal = kernel.create_portal("outage")
    portal.setup("create table t (id bigint primary key, v text);"
                 "insert into t select g, 'v' from generate_series(1, 100) g;", "t?select=id")
    assert portal.rest("GET", "t", key=portal.anon, params={"id": "eq.1"}).json() == [{"id": 1, "v": "v"}]

    load = Load(portal)
    load.start()
    outages = []
    try:
        for _ in range(2):
            time.sleep(1.0)
            pid = kernel.postmaster_pid()
            assert pid, f"no embedded postmaster found (cluster {kernel.postgres_cluster()})"
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            new_pid = wait_for_restart(kernel, pid)
            wait_for_success(portal)
            outages.append((pid, new_pid, time.monotonic() - killed))
        time.sleep(2.0)
    finally:
        load.finish()

    assert kernel.process.poll() is None, f"the kernel exited; log:\n{kernel.log_tail()}"
    bad = []
    counts: dict[str, int] = {}
    for at, kind, status, retry_after, body in load.results:
        counts[f"{kind} {status}"] = counts.get(f"{kind} {status}", 0) + 1
        if status == 503:
            if not retry_after:
                bad.append(f"{kind}: 503 without Retry-After: {body}")
        elif status not in ({"get": 200, "post": 201}[kind],):
            bad.append(f"{kind}: {status} {body}")
    summary = f"outages (old pid, new pid, seconds to recover) {outages}; answers {counts}"
    assert not bad, f"{summary}\nunexpected answers (first 20):\n" + "\n".join(bad[:20])
    assert counts.get("get 200", 0) > 0 and counts.get("post 201", 0) > 0, summary

    # Afterwards: reads and writes succeed, without a kernel restart.
    for i in range(20):
        response = portal.rest("GET", "t", key=portal.anon, params={"id": f"eq.{i + 1}"})
        assert response.status_code == 200 and response.json() == [{"id": i + 1, "v": "v"}], describe(response)
    response = portal.rest("POST", "t", key=portal.anon, json={"id": 99_999_999, "v": "after"})
    assert response.status_code == 201, describe(response)
    # The SQL console, first request after REST recovered (its connections saw the crash too).
    console = [portal.sql_response("select v from t where id = 99999999") for _ in range(3)]

    # Every acknowledged write survived the crashes.
    acknowledged = set(load.acknowledged)
    stored = {int(value) for value in sql_retrying(portal, "select id from t where id >= 1000000")}
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} writes answered 201 are not in the table: {sorted(missing)[:20]}; {summary}"
    print(summary)
    for response in console:
        assert response.status_code == 200 and response.json()["rows"] == [["after"]], (
            "the SQL console fails after the database recovered (REST works): " + describe(response))


def sql_retrying(portal, query: str) -> list:
    """Rows of `query`, retrying 503s (for checks after an outage)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        response = portal.sql_response(query)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, describe(response)
            return [row[0] for row in response.json()["rows"]]
        time.sleep(0.2)


def test_sql_console_and_auth_recover_too(kernel_factory):
    kernel = kernel_factory()
    portal = kernel.create_portal("outage2")
    pid = kernel.postmaster_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    # Right after the kill: an answer (503 with Retry-After, or a success), no hang.
    response = portal.sql_response("select 1")
    assert response.status_code in (200, 503), describe(response)
    if response.status_code == 503:
        assert response.headers.get("retry-after"), describe(response)
    wait_for_restart(kernel, pid)
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while portal.sql_response("select 1").status_code != 200:
        assert time.monotonic() < deadline, "the SQL console did not recover"
        time.sleep(0.2)
    assert portal.sql_rows("select 41 + 1") == [[42]]
    client = portal.client(portal.anon)
    email = f"after-outage-{int(time.time() * 1000)}@example.com"
    client.auth.sign_up({"email": email, "password": "correct-Horse-7-battery"})
    session = client.auth.sign_in_with_password({"email": email, "password": "correct-Horse-7-battery"}).session
    assert session and session.access_token
