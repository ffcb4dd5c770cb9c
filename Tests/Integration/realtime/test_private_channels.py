"""Private channels: authorised by row-level security policies on realtime.messages in the
portal's database (Supabase's model), written by an app's own migration; replay of stored
broadcasts; token refresh through access_token."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import rtkit
from rtkit import User

POLICIES = """
create table if not exists rooms_members (room text not null, user_id uuid not null, primary key (room, user_id));
grant select on rooms_members to authenticated;
create policy members_read on realtime.messages for select to authenticated
  using (exists (select 1 from rooms_members m where m.room = realtime.topic() and m.user_id = auth.uid()));
create policy members_write on realtime.messages for insert to authenticated
  with check (exists (select 1 from rooms_members m where m.room = realtime.topic() and m.user_id = auth.uid()));
"""


@pytest.fixture(scope="module")
def room(portal):
    portal.sql(POLICIES)
    alice, bob = User(portal, "alice"), User(portal, "bob")
    name = f"room-{uuid.uuid4().hex[:6]}"
    portal.sql(f"insert into rooms_members values ('{name}', '{alice.id}')")
    return {"name": name, "alice": alice, "bob": bob}


def test_members_join_and_send_others_are_refused(portal, room):
    async def scenario():
        alice = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        bob = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        anon = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            config = {"broadcast": {"self": True}, "private": True}
            reply = await alice.join(f"realtime:{room['name']}", config, access_token=room["alice"].token)
            assert reply["payload"]["status"] == "ok", reply
            refused = await bob.join(f"realtime:{room['name']}", config, access_token=room["bob"].token)
            assert refused["payload"]["status"] == "error"
            assert "permissions" in refused["payload"]["response"]["reason"]
            refused = await anon.join(f"realtime:{room['name']}", config)
            assert refused["payload"]["status"] == "error"
            # The same name as a public channel is another channel: bob joins it but hears nothing private.
            assert (await bob.join(f"realtime:{room['name']}", {"private": False}))["payload"]["status"] == "ok"
            await alice.send(f"realtime:{room['name']}", "broadcast", {"type": "broadcast", "event": "secret", "payload": {"v": 1}}, join_ref=reply["join_ref"])
            heard = await alice.until(lambda f: f.get("event") == "broadcast")
            assert heard["payload"]["payload"] == {"v": 1}
        finally:
            for socket in (alice, bob, anon):
                await socket.close()

    asyncio.run(scenario())


def test_replay_returns_stored_private_broadcasts_since_a_time(portal, room):
    async def scenario():
        since = int(time.time() * 1000)
        await asyncio.sleep(0.05)
        sender = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            reply = await sender.join(f"realtime:{room['name']}", {"private": True, "broadcast": {"ack": True}}, access_token=room["alice"].token)
            for n in range(3):
                ref = await sender.send(f"realtime:{room['name']}", "broadcast", {"type": "broadcast", "event": "note", "payload": {"n": n}}, join_ref=reply["join_ref"])
                await sender.until(lambda f, ref=ref: f.get("ref") == ref)
        finally:
            await sender.close()
        await asyncio.sleep(0.5)  # stored asynchronously
        late = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            reply = await late.join(f"realtime:{room['name']}", {"private": True, "broadcast": {"replay": {"since": since, "limit": 2}}},
                                    access_token=room["alice"].token)
            assert reply["payload"]["status"] == "ok", reply
            first = await late.until(lambda f: f.get("event") == "broadcast")
            second = await late.until(lambda f: f.get("event") == "broadcast")
            assert [first["payload"]["payload"]["n"], second["payload"]["payload"]["n"]] == [0, 1]
            assert first["payload"]["meta"]["replayed"] is True and first["payload"]["meta"]["id"]
        finally:
            await late.close()

    asyncio.run(scenario())


def test_http_broadcast_to_a_private_channel_needs_the_insert_policy(portal, room):
    import httpx

    url = f"{portal.base}/realtime/v1/api/broadcast"
    body = {"messages": [{"topic": room["name"], "event": "e", "payload": {}, "private": True}]}
    as_bob = httpx.post(url, headers={"apikey": portal.anon, "authorization": f"Bearer {room['bob'].token}"}, json=body)
    assert as_bob.status_code == 403, as_bob.text
    as_alice = httpx.post(url, headers={"apikey": portal.anon, "authorization": f"Bearer {room['alice'].token}"}, json=body)
    assert as_alice.status_code == 202, as_alice.text
    as_service = httpx.post(url, headers={"apikey": portal.service, "authorization": f"Bearer {portal.service}"}, json=body)
    assert as_service.status_code == 202, as_service.text


def test_access_token_refresh_and_a_bad_token_closes_the_channel(portal, room):
    async def scenario():
        raw = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            reply = await raw.join("realtime:refresh", {}, access_token=room["alice"].token)
            assert reply["payload"]["status"] == "ok"
            await raw.send("realtime:refresh", "access_token", {"access_token": room["bob"].token}, join_ref=reply["join_ref"])
            await raw.send("realtime:refresh", "access_token", {"access_token": "not.a.token"}, join_ref=reply["join_ref"])
            system = await raw.until(lambda f: f.get("event") == "system")
            assert system["payload"]["status"] == "error" and "token" in system["payload"]["message"].lower()
            closed = await raw.until(lambda f: f.get("event") == "phx_close")
            assert closed["topic"] == "realtime:refresh"
        finally:
            await raw.close()

    asyncio.run(scenario())
