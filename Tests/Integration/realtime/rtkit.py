"""Realtime test helpers: the PyPI `realtime` client and a raw vsn=2.0.0 client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets

import dbkit

PASSWORD = "correct-Horse-7-battery"


class User(dbkit.SignedInUser):
    """A signed-up, signed-in user of a portal (dbkit.SignedInUser with this file's password)."""

    def __init__(self, portal, tag: str):
        super().__init__(portal, tag, PASSWORD)


REALTIME_TOML = """
# Usage reaches /metrics within a second (test_backpressure_limits.py checks connections_peak).
[metering]
flush_interval_seconds = 1

[plugins.realtime]
path = "libRealtimePlugin.so"
"""


def start_kernel(extra_toml: str = "") -> dbkit.Kernel:
    try:
        return dbkit.Kernel(REALTIME_TOML + extra_toml)
    except dbkit.SetupError as error:
        pytest.fail(f"cannot start the kernel with the Realtime plugin: {error}", pytrace=False)


def stop_kernel(kernel: dbkit.Kernel) -> list[str]:
    return dbkit.stop_and_check(kernel)




def websocket_url(portal, key: str | None = None, vsn: str = "1.0.0") -> str:
    base = portal.base.replace("http://", "ws://")
    return f"{base}/realtime/v1/websocket?apikey={key or portal.anon}&vsn={vsn}"


def realtime_url(portal) -> str:
    """What supabase-py hands the realtime client: the ws URL of /realtime/v1."""
    return portal.base.replace("http://", "ws://") + "/realtime/v1"


async def client(portal, key: str | None = None, token: str | None = None):
    from realtime import AsyncRealtimeClient

    socket = AsyncRealtimeClient(realtime_url(portal), token=key or portal.anon, auto_reconnect=False)
    await socket.connect()
    if token:
        await socket.set_auth(token)
    return socket


async def subscribed(channel, timeout: float = 10.0):
    """Subscribes and waits for SUBSCRIBED (raises with the state otherwise)."""
    from realtime import RealtimeSubscribeStates

    done: asyncio.Future = asyncio.get_running_loop().create_future()

    def callback(state, error):
        if not done.done():
            done.set_result((state, error))

    await channel.subscribe(callback)
    state, error = await asyncio.wait_for(done, timeout)
    assert state == RealtimeSubscribeStates.SUBSCRIBED, f"{state}: {error}"
    return channel


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


class RawSocket:
    """A hand-written Phoenix client: vsn=1.0.0 objects or vsn=2.0.0 arrays and binary frames."""

    def __init__(self, connection, vsn: str):
        self.connection = connection
        self.vsn = vsn
        self.ref = 0
        self.inbox: list[Any] = []

    @classmethod
    async def open(cls, portal, vsn: str = "2.0.0", key: str | None = None, **kwargs) -> "RawSocket":
        connection = await websockets.connect(websocket_url(portal, key, vsn), max_size=None, **kwargs)
        return cls(connection, vsn)

    async def send(self, topic: str, event: str, payload: dict, join_ref: str | None = None) -> str:
        self.ref += 1
        ref = str(self.ref)
        if self.vsn == "2.0.0":
            await self.connection.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            await self.connection.send(json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}))
        return ref

    async def send_raw(self, data) -> None:
        await self.connection.send(data)

    async def receive(self, timeout: float = 5.0):
        """The next frame: a dict {join_ref, ref, topic, event, payload} for text, bytes for binary."""
        data = await asyncio.wait_for(self.connection.recv(), timeout)
        if isinstance(data, bytes):
            return data
        decoded = json.loads(data)
        if isinstance(decoded, list):
            join_ref, ref, topic, event, payload = decoded
            return {"join_ref": join_ref, "ref": ref, "topic": topic, "event": event, "payload": payload}
        return decoded

    async def until(self, predicate, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no matching frame in time")
            frame = await self.receive(remaining)
            if predicate(frame):
                return frame
            self.inbox.append(frame)

    async def join(self, topic: str, config: dict | None = None, access_token: str | None = None) -> dict:
        payload: dict[str, Any] = {"config": config or {"broadcast": {"ack": False, "self": False}, "presence": {"enabled": False}, "postgres_changes": []}}
        if access_token:
            payload["access_token"] = access_token
        ref = await self.send(topic, "phx_join", payload, join_ref=None)
        return await self.until(lambda f: isinstance(f, dict) and f["event"] == "phx_reply" and f["ref"] == ref)

    async def close(self) -> None:
        await self.connection.close()


async def presence_and_broadcast_cross(listening, talking, topic: str, payload: dict) -> None:
    """`talking` (a client on another kernel) joins `topic` with presence, tracks, broadcasts
    `payload` and disconnects: `listening` must see the join, the broadcast and the leave.
    Closes `talking`."""
    heard: list[dict] = []
    joins: list[str] = []
    leaves: list[str] = []
    a = listening.channel(topic, {"config": {"presence": {"key": "listening"}}})
    a.on_broadcast("*", lambda message: heard.append(message))
    a.on_presence_join(lambda key, current, new: joins.append(key))
    a.on_presence_leave(lambda key, current, left: leaves.append(key))
    await subscribed(a)
    b = talking.channel(topic, {"config": {"presence": {"key": "talking"}}})
    await subscribed(b)
    await b.track({"where": "another kernel"})
    await wait_for(lambda: "talking" in joins)
    await b.send_broadcast("hello", payload)
    await wait_for(lambda: heard)
    assert heard[0]["payload"] == payload
    await talking.close()
    await wait_for(lambda: "talking" in leaves)


def binary_push(join_ref: str, ref: str, topic: str, event: str, payload: bytes, json_encoded: bool) -> bytes:
    """A vsn=2.0.0 user broadcast push (kind 3), as supabase-js encodes it."""
    head = bytes([3, len(join_ref), len(ref), len(topic), len(event), 1 if json_encoded else 0])
    return head + join_ref.encode() + ref.encode() + topic.encode() + event.encode() + payload


def decode_binary_broadcast(frame: bytes) -> dict:
    """A server user broadcast (kind 4) as supabase-js decodes it."""
    assert frame[0] == 4, frame[:8]
    topic_len, event_len, meta_len, encoding = frame[1], frame[2], frame[3], frame[4]
    offset = 5
    topic = frame[offset:offset + topic_len].decode()
    offset += topic_len
    event = frame[offset:offset + event_len].decode()
    offset += event_len
    meta = frame[offset:offset + meta_len]
    offset += meta_len
    body = frame[offset:]
    return {"topic": topic, "event": event, "meta": json.loads(meta) if meta else None,
            "payload": json.loads(body) if encoding == 1 else body, "json": encoding == 1}
