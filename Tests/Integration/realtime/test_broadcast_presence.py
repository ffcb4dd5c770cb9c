"""Broadcast and presence through the real PyPI `realtime` client (vsn=1.0.0) and a
hand-written vsn=2.0.0 client (JSON arrays and binary broadcast frames)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

import rtkit


def run(coroutine):
    return asyncio.run(coroutine)


def test_broadcast_reaches_other_subscribers_and_self_only_when_asked(portal):
    async def scenario():
        sender = await rtkit.client(portal)
        listener = await rtkit.client(portal)
        try:
            received: list[dict] = []
            echoed: list[dict] = []
            channel_a = sender.channel("room-self", {"config": {"broadcast": {"self": True, "ack": True}}})
            channel_a.on_broadcast("chat", lambda payload: echoed.append(payload))
            channel_b = listener.channel("room-self")
            channel_b.on_broadcast("chat", lambda payload: received.append(payload))
            await rtkit.subscribed(channel_a)
            await rtkit.subscribed(channel_b)
            await channel_a.send_broadcast("chat", {"text": "hello", "n": 12345678901234567890})
            await rtkit.wait_for(lambda: received and echoed)
            assert received[0]["event"] == "chat"
            assert received[0]["payload"] == {"text": "hello", "n": 12345678901234567890}
            assert echoed[0]["payload"]["text"] == "hello"

            quiet: list[dict] = []
            channel_c = sender.channel("room-quiet")
            channel_c.on_broadcast("*", lambda payload: quiet.append(payload))
            heard: list[dict] = []
            channel_d = listener.channel("room-quiet")
            channel_d.on_broadcast("*", lambda payload: heard.append(payload))
            await rtkit.subscribed(channel_c)
            await rtkit.subscribed(channel_d)
            await channel_c.send_broadcast("ping", {"k": 1})
            await rtkit.wait_for(lambda: heard)
            await asyncio.sleep(0.3)
            assert quiet == [], "self defaults to false: the sender must not hear itself"
        finally:
            await sender.close()
            await listener.close()

    run(scenario())


def test_ack_is_a_reply_to_the_push_ref(portal):
    async def scenario():
        raw = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            reply = await raw.join("realtime:acked", {"broadcast": {"ack": True, "self": False}})
            assert reply["payload"]["status"] == "ok", reply
            ref = await raw.send("realtime:acked", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}, join_ref=reply["join_ref"])
            ack = await raw.until(lambda f: isinstance(f, dict) and f["event"] == "phx_reply" and f["ref"] == ref)
            assert ack["payload"]["status"] == "ok"
        finally:
            await raw.close()

    run(scenario())


def test_presence_state_join_and_leave_on_disconnect(portal):
    async def scenario():
        watcher = await rtkit.client(portal)
        visitor = await rtkit.client(portal)
        try:
            joins: list[tuple[str, list]] = []
            leaves: list[tuple[str, list]] = []
            room = watcher.channel("lobby", {"config": {"presence": {"key": "watcher"}}})
            room.on_presence_join(lambda key, current, new: joins.append((key, new)))
            room.on_presence_leave(lambda key, current, left: leaves.append((key, left)))
            await rtkit.subscribed(room)
            await room.track({"name": "watcher"})

            visiting = visitor.channel("lobby", {"config": {"presence": {"key": "ada"}}})
            synced: list[bool] = []
            visiting.on_presence_sync(lambda: synced.append(True))
            await rtkit.subscribed(visiting)
            await rtkit.wait_for(lambda: synced)
            # track() returns once sent: the watcher's meta arrives in presence_state or, when the
            # visitor joined first, in a presence_diff right after.
            await rtkit.wait_for(lambda: "watcher" in visiting.presence_state())
            await visiting.track({"name": "Ada", "status": "online"})
            await rtkit.wait_for(lambda: any(key == "ada" for key, _ in joins))
            ada = [new for key, new in joins if key == "ada"][0]
            assert ada[0]["name"] == "Ada" and ada[0]["status"] == "online"
            assert "presence_ref" in ada[0]

            await visitor.close()
            await rtkit.wait_for(lambda: any(key == "ada" for key, _ in leaves))
            assert "ada" not in room.presence_state()
            assert "watcher" in room.presence_state()
        finally:
            await watcher.close()

    run(scenario())


def test_vsn2_arrays_and_binary_broadcast_frames(portal):
    async def scenario():
        v2_sender = await rtkit.RawSocket.open(portal, vsn="2.0.0")
        v2_listener = await rtkit.RawSocket.open(portal, vsn="2.0.0")
        v1_listener = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            reply = await v2_sender.join("realtime:mixed")
            assert reply["payload"] == {"status": "ok", "response": {"postgres_changes": []}}
            await v2_listener.join("realtime:mixed")
            await v1_listener.join("realtime:mixed")

            # A JSON user broadcast pushed as a binary frame (kind 3, encoding 1).
            await v2_sender.send_raw(rtkit.binary_push("1", "9", "realtime:mixed", "move", json.dumps({"x": 1, "big": 9007199254740993}).encode(), True))
            frame = await v2_listener.until(lambda f: isinstance(f, bytes))
            decoded = rtkit.decode_binary_broadcast(frame)
            assert decoded["topic"] == "realtime:mixed" and decoded["event"] == "move" and decoded["json"]
            assert decoded["payload"] == {"x": 1, "big": 9007199254740993}
            text = await v1_listener.until(lambda f: isinstance(f, dict) and f["event"] == "broadcast")
            assert text["payload"] == {"type": "broadcast", "event": "move", "payload": {"x": 1, "big": 9007199254740993}}
            assert text["ref"] is None

            # Raw bytes (encoding 0) reach v2 clients byte for byte, NUL included.
            blob = bytes(range(256)) * 4
            await v2_sender.send_raw(rtkit.binary_push("1", "10", "realtime:mixed", "blob", blob, False))
            frame = await v2_listener.until(lambda f: isinstance(f, bytes))
            decoded = rtkit.decode_binary_broadcast(frame)
            assert decoded["event"] == "blob" and not decoded["json"] and decoded["payload"] == blob

            # A JSON-array push of a broadcast reaches the v2 listener as a binary frame too.
            await v2_sender.send("realtime:mixed", "broadcast", {"type": "broadcast", "event": "arr", "payload": {"a": [1, 2]}}, join_ref="1")
            frame = await v2_listener.until(lambda f: isinstance(f, bytes))
            assert rtkit.decode_binary_broadcast(frame)["payload"] == {"a": [1, 2]}

            # Heartbeats answer in the array form.
            ref = await v2_sender.send("phoenix", "heartbeat", {})
            beat = await v2_sender.until(lambda f: isinstance(f, dict) and f["ref"] == ref)
            assert beat["topic"] == "phoenix" and beat["payload"]["status"] == "ok"
        finally:
            for socket in (v2_sender, v2_listener, v1_listener):
                await socket.close()

    run(scenario())


def test_http_broadcast_endpoints(portal):
    async def scenario():
        listener = await rtkit.client(portal)
        try:
            heard: list[dict] = []
            channel = listener.channel("news")
            channel.on_broadcast("*", lambda payload: heard.append(payload))
            await rtkit.subscribed(channel)
            response = httpx.post(
                f"{portal.base}/realtime/v1/api/broadcast",
                headers={"apikey": portal.anon, "authorization": f"Bearer {portal.anon}"},
                json={"messages": [{"topic": "news", "event": "headline", "payload": {"title": "hi", "n": 1.5e300}}]})
            assert response.status_code == 202, response.text
            await rtkit.wait_for(lambda: heard)
            assert heard[0]["event"] == "headline" and heard[0]["payload"] == {"title": "hi", "n": 1.5e300}

            await channel.http_send("second", {"ok": True})
            await rtkit.wait_for(lambda: len(heard) >= 2)
            assert heard[1]["event"] == "second" and heard[1]["payload"] == {"ok": True}

            for body, status in [({"messages": "x"}, 400), ({}, 400), ({"messages": [{"topic": "", "event": "e"}]}, 400),
                                 ({"messages": [{"topic": "a\u0000b", "event": "e"}]}, 400)]:
                bad = httpx.post(f"{portal.base}/realtime/v1/api/broadcast", headers={"apikey": portal.anon}, json=body)
                assert bad.status_code == status, (body, bad.status_code, bad.text)
                assert "message" in bad.json()
            unauthenticated = httpx.post(f"{portal.base}/realtime/v1/api/broadcast", json={"messages": []})
            assert unauthenticated.status_code == 401
        finally:
            await listener.close()

    run(scenario())


@pytest.mark.parametrize("message", [
    "not json", "{}", "[]", '{"topic": 5, "event": "phx_join"}', '{"topic": "realtime:x", "event": "phx_join", "payload": []}',
    '{"topic": "realtime:x", "event": "phx_join", "payload": {"config": {"postgres_changes": [{"event": "DROP TABLE"}]}}, "ref": "1"}',
    '{"topic": "realtime:x", "event": "phx_join", "payload": {"config": {"broadcast": {"replay": {"since": -1}}}}, "ref": "1"}',
    '{"topic": "realtime:x\\u0000y", "event": "phx_join", "payload": {}, "ref": "1"}',
    '{"topic": "realtime:' + "x" * 100000 + '", "event": "phx_join", "payload": {}, "ref": "1"}',
    '{"topic": "realtime:x", "event": "broadcast", "payload": {"event": "e"}, "ref": "1"}',
    '{"topic": "realtime:x", "event": "presence", "payload": {"event": "track", "payload": 5}, "ref": "1"}',
    '{"topic": "realtime:x", "event": "nonsense", "payload": {}, "ref": "1"}',
    "[" * 10000 + "]" * 10000,
    '{"topic": "realtime:x", "event": "phx_join", "payload": {"access_token": "garbage"}, "ref": "1"}',
])
def test_hostile_messages_get_errors_and_the_socket_survives(portal, message):
    async def scenario():
        raw = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            await raw.send_raw(message)
            answer = await raw.receive()
            assert answer["event"] in ("phx_reply", "system"), answer
            status = answer["payload"].get("status")
            assert status == "error", answer
            ref = await raw.send("phoenix", "heartbeat", {})
            beat = await raw.until(lambda f: isinstance(f, dict) and f["ref"] == ref)
            assert beat["payload"]["status"] == "ok"
        finally:
            await raw.close()

    run(scenario())


def test_binary_frames_need_vsn2_and_a_valid_header(portal):
    async def scenario():
        v1 = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        v2 = await rtkit.RawSocket.open(portal, vsn="2.0.0")
        try:
            await v1.send_raw(rtkit.binary_push("1", "1", "realtime:x", "e", b"{}", True))
            assert (await v1.receive())["payload"]["status"] == "error"
            for frame in [b"", b"\x03", bytes([3, 200, 0, 0, 0, 1]), bytes([9, 0, 0, 0, 0, 0]), bytes([3, 0, 0, 3, 1, 7]) + b"abce",
                          rtkit.binary_push("1", "1", "realtime:x", "e", b"{not json", True)]:
                await v2.send_raw(frame)
                answer = await v2.receive()
                assert answer["payload"]["status"] == "error", (frame, answer)
            ref = await v2.send("phoenix", "heartbeat", {})
            assert (await v2.until(lambda f: isinstance(f, dict) and f["ref"] == ref))["payload"]["status"] == "ok"
        finally:
            await v1.close()
            await v2.close()

    run(scenario())


@pytest.mark.parametrize("query, reason", [
    ("apikey=not-a-jwt&vsn=1.0.0", "unauthorized"),
    ("vsn=1.0.0", "unauthorized"),
    ("apikey={anon}&vsn=9.9.9", "vsn"),
])
def test_connections_without_a_key_or_with_an_unknown_vsn_are_closed_with_a_reason(portal, query, reason):
    async def scenario():
        url = portal.base.replace("http://", "ws://") + "/realtime/v1/websocket?" + query.format(anon=portal.anon)
        async with websockets.connect(url) as connection:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(connection.recv(), 5)
            assert closed.value.rcvd.code == 1008
            assert reason in closed.value.rcvd.reason

    run(scenario())


def test_a_key_of_another_portal_is_refused(portal, new_portal):
    other = new_portal()

    async def scenario():
        url = portal.base.replace("http://", "ws://") + f"/realtime/v1/websocket?apikey={other.anon}&vsn=1.0.0"
        async with websockets.connect(url) as connection:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(connection.recv(), 5)
            assert closed.value.rcvd.code == 1008

    run(scenario())
