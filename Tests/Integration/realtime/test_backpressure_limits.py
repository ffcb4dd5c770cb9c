"""Backpressure and limits: a client that stops reading is dropped as a slow consumer (the
kernel's bounded per-socket queue) while other subscribers keep receiving everything;
a portal's joins per second and its socket count are bounded as plugins.toml says."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

import rtkit
from rtkit import start_kernel, stop_kernel


def test_a_client_that_does_not_read_is_closed_as_a_slow_consumer(portal):
    async def scenario():
        stalled = await websockets.connect(rtkit.websocket_url(portal), max_queue=1, max_size=None)
        reader = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            await stalled.send(json.dumps({"topic": "realtime:flood", "event": "phx_join", "payload": {}, "ref": "1", "join_ref": "1"}))
            await stalled.recv()  # the join reply; from now on it reads nothing
            await reader.join("realtime:flood")
            big = "x" * 60_000
            received = 0

            async def read_all():
                nonlocal received
                while received < 600:
                    frame = await reader.receive(timeout=30)
                    if isinstance(frame, dict) and frame.get("event") == "broadcast":
                        received += 1

            reading = asyncio.create_task(read_all())
            url = f"{portal.base}/realtime/v1/api/broadcast"
            async with httpx.AsyncClient(timeout=30) as http:
                for _ in range(60):
                    answer = await http.post(url, headers={"apikey": portal.service},
                                             json={"messages": [{"topic": "flood", "event": "big", "payload": {"b": big}}] * 10})
                    assert answer.status_code == 202, answer.text
            # The reader keeps up and receives everything.
            await asyncio.wait_for(reading, 60)
            assert received == 600
            # The kernel drops it at once (a close frame could not reach a client that does not
            # read): what it had buffered arrives, then the connection ends.
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(stalled.recv(), 30)
            if closed.value.rcvd is not None:
                assert closed.value.rcvd.code == 1008 and "slow consumer" in closed.value.rcvd.reason
        finally:
            await reader.close()
            await stalled.close()

    asyncio.run(scenario())


def test_open_connections_are_metered_as_an_hourly_peak(new_portal):
    portal = new_portal()
    pattern = 'meltybase_usage_peak{portal="%s",plugin="realtime",metric="connections_peak"} ' % portal.name

    def peak() -> int:
        for line in httpx.get(portal.kernel.url + "/metrics", timeout=30).text.splitlines():
            if line.startswith(pattern):
                return int(float(line[len(pattern):]))
        return 0

    async def scenario():
        sockets = [await websockets.connect(rtkit.websocket_url(portal), max_size=None) for _ in range(4)]
        try:
            for _ in range(100):  # the kernel flushes each second here
                if peak() >= 4:
                    break
                await asyncio.sleep(0.2)
            assert peak() == 4
        finally:
            for socket in sockets:
                await socket.close()

    asyncio.run(scenario())


def test_limits_on_joins_and_connections():
    kernel = start_kernel("""
[plugins.realtime.config]
max_connections = 3
max_joins_per_second = 2
""")
    try:
        portal = kernel.create_portal("lim", plugins="database,realtime")

        async def scenario():
            sockets = [await rtkit.RawSocket.open(portal, vsn="1.0.0") for _ in range(3)]
            try:
                async with websockets.connect(rtkit.websocket_url(portal)) as fourth:
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(fourth.recv(), 5)
                    assert closed.value.rcvd.code == 1008 and "limit of 3 connections" in closed.value.rcvd.reason
                answers = [await sockets[0].join(f"realtime:j{n}") for n in range(8)]
                statuses = [answer["payload"]["status"] for answer in answers]
                assert "error" in statuses and statuses[0] == "ok"
                refused = next(answer for answer in answers if answer["payload"]["status"] == "error")
                assert "joins per second" in refused["payload"]["response"]["reason"]
            finally:
                for socket in sockets:
                    await socket.close()

        asyncio.run(scenario())
    finally:
        failures = stop_kernel(kernel)
        assert not failures, "\n".join(failures)


def test_origins_are_checked_for_browsers():
    kernel = start_kernel("""
[plugins.realtime.config]
allowed_origins = ["https://app.example.com"]
""")
    try:
        portal = kernel.create_portal("org", plugins="database,realtime")

        async def scenario():
            async with websockets.connect(rtkit.websocket_url(portal), origin="https://app.example.com") as allowed:
                await allowed.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}))
                assert json.loads(await asyncio.wait_for(allowed.recv(), 5))["payload"]["status"] == "ok"
            async with websockets.connect(rtkit.websocket_url(portal), origin="https://evil.example.com") as refused:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(refused.recv(), 5)
                assert closed.value.rcvd.code == 1008 and "origin" in closed.value.rcvd.reason

        asyncio.run(scenario())
    finally:
        failures = stop_kernel(kernel)
        assert not failures, "\n".join(failures)


@pytest.mark.parametrize("toml, message", [
    ("max_connections = 0", "max_connections"),
    ("allowed_origins = [\"app.example.com\"]", "http://"),
    ("unknown_key = 1", "unknown_key"),
])
def test_bad_configuration_refuses_the_plugin_with_a_clear_line(toml, message):
    kernel = start_kernel(f"[plugins.realtime.config]\n{toml}\n")
    try:
        assert message in kernel.log_text(), kernel.log_tail()
    finally:
        stop_kernel(kernel)
