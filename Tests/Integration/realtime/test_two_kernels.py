"""Several kernels on one Postgres and Redis: broadcast and presence cross kernels through
Redis, and when the kernel holding a portal's replication slot is killed (-9) under a steady
insert stream, another takes the slot over and every committed row reaches the subscriber.

Kernel A owns the embedded Postgres and Redis (Database plugin only); kernels B and C run
the Database and Realtime plugins against A's servers, with A's keys (one key set per
cluster; issue 18 makes that a documented step)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
import time
import uuid

import pytest

import dbkit
import rtkit
from rtkit import REALTIME_TOML, stop_kernel

KEY_FILES = ("mfa-secret.key", "audit-signing.key", "audit-signing.pub", "evaluation-license-signing.key")


def joined_kernel(services: dbkit.Kernel) -> dbkit.Kernel:
    socket_dir = services.socket_directory()
    toml = REALTIME_TOML + f"""
[database]
url = "host={socket_dir} port=5432 user=meltybase dbname=meltybase"

[redis]
url = "unix://{services.data_dir / 'redis' / 'redis.sock'}"
"""

    def copy_keys(kernel: dbkit.Kernel) -> None:
        for name in KEY_FILES:
            source = services.data_dir / name
            if source.exists():
                shutil.copy2(source, kernel.data_dir / name)

    return dbkit.Kernel(toml, prepare=copy_keys)


@pytest.fixture(scope="module")
def cluster():
    services = dbkit.Kernel()
    started = [services]
    try:
        first = joined_kernel(services)
        started.append(first)
        portal_on_first = first.create_portal("mesh", plugins="database,realtime")
        second = joined_kernel(services)
        started.append(second)
        portal_on_second = dbkit.Portal(second, portal_on_first.name, portal_on_first.anon, portal_on_first.service)
        second._wait_for_portal(portal_on_second)
        portal_on_services = dbkit.Portal(services, portal_on_first.name, portal_on_first.anon, portal_on_first.service)
        services._wait_for_portal(portal_on_services)
        yield {"services": services, "first": first, "second": second,
               "p1": portal_on_first, "p2": portal_on_second, "sql": portal_on_services}
    finally:
        failures = []
        for kernel in reversed(started):
            if kernel.process.poll() is None:
                failures += stop_kernel(kernel)
        assert not failures, "\n".join(failures)


def test_broadcast_and_presence_cross_kernels(cluster):
    async def scenario():
        on_first = await rtkit.client(cluster["p1"])
        on_second = await rtkit.client(cluster["p2"])
        try:
            await rtkit.presence_and_broadcast_cross(on_first, on_second, "crossing", {"from": "second"})
        finally:
            await on_first.close()

    asyncio.run(scenario())


def test_kill_9_of_the_slot_holder_moves_cdc_and_loses_no_committed_row(cluster):
    sql = cluster["sql"]
    sql.sql("create table if not exists ticks (id bigint primary key, at timestamptz default now());"
            "alter publication supabase_realtime add table ticks;")
    first, second = cluster["first"], cluster["second"]
    committed: list[int] = []
    stop = threading.Event()

    def insert_stream():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                sql.sql(f"insert into ticks (id) values ({n})")
                committed.append(n)
            except Exception:  # noqa: BLE001 - a failed insert is simply not committed
                pass
            time.sleep(0.02)

    async def scenario():
        subscriber = await rtkit.client(cluster["p2"], token=cluster["p2"].service)
        try:
            received: set[int] = set()
            channel = subscriber.channel(f"ticks-{uuid.uuid4().hex[:6]}")
            channel.on_postgres_changes("INSERT", lambda payload: received.add(payload["data"]["record"]["id"]), table="ticks", schema="public")
            await rtkit.subscribed(channel)
            writer = threading.Thread(target=insert_stream, daemon=True)
            writer.start()
            await asyncio.sleep(2.0)
            assert received, "changes should flow before the kill"
            slot_query = "select active_pid from pg_replication_slots where slot_name like 'realtime_mesh%'"
            holder_before = sql.sql_rows(slot_query)[0][0]
            assert holder_before is not None
            # The first kernel started first and holds the slot: kill it outright.
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait()
            await asyncio.sleep(4.0)
            stop.set()
            writer.join()
            expected = set(committed)
            await rtkit.wait_for(lambda: expected <= received, timeout=30)
            assert len(expected) > 50
            holder_after = sql.sql_rows(slot_query)[0][0]
            assert holder_after is not None and holder_after != holder_before, "the other kernel must stream the slot now"
        finally:
            await subscriber.close()

    asyncio.run(scenario())
