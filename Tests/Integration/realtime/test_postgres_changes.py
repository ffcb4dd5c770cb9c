"""postgres_changes from WAL logical replication, checked by row-level security per
subscriber, through the PyPI realtime client; the app's own Supabase-style migration."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import rtkit
from rtkit import User

# What a Supabase app's migration says, unchanged.
MIGRATION = """
create table todos (
  id bigserial primary key,
  owner uuid not null default auth.uid(),
  title text not null,
  done boolean not null default false,
  big bigint,
  amount numeric,
  meta jsonb,
  secret text
);
alter table todos enable row level security;
create policy "own todos" on todos for select to authenticated using (owner = auth.uid());
create policy "own inserts" on todos for insert to authenticated with check (owner = auth.uid());
revoke select on todos from authenticated;
grant select (id, owner, title, done, big, amount, meta) on todos to authenticated;
alter publication supabase_realtime add table todos;

create table announcements (id bigserial primary key, body text, level int);
alter publication supabase_realtime add table announcements;
"""


@pytest.fixture(scope="module")
def app(portal):
    portal.sql(MIGRATION)
    return {"alice": User(portal, "alice"), "bob": User(portal, "bob")}


async def listen(portal, table: str, token: str | None = None, event: str = "*", filter: str | None = None):
    socket = await rtkit.client(portal, token=token)
    events: list[dict] = []
    channel = socket.channel(f"db-{uuid.uuid4().hex[:6]}")
    kwargs = {"filter": filter} if filter else {}
    channel.on_postgres_changes(event, lambda payload: events.append(payload), table=table, schema="public", **kwargs)
    await rtkit.subscribed(channel)
    return socket, events


def test_each_user_receives_only_their_rows_anon_none_and_never_a_revoked_column(portal, app):
    alice, bob = app["alice"], app["bob"]

    async def scenario():
        alice_socket, alice_events = await listen(portal, "todos", alice.token)
        bob_socket, bob_events = await listen(portal, "todos", bob.token)
        anon_socket, anon_events = await listen(portal, "todos")
        service_socket, service_events = await listen(portal, "todos", portal.service)
        try:
            portal.sql(f"insert into todos (owner, title, big, amount, meta, secret) values "
                       f"('{alice.id}', 'alice''s', 9007199254740993, 12345678901234567890.123, '{{\"k\": [1, \"two\"]}}', 'hidden-a'),"
                       f"('{bob.id}', 'bob''s', null, null, null, 'hidden-b')")
            await rtkit.wait_for(lambda: alice_events and bob_events and len(service_events) >= 2)
            await asyncio.sleep(0.5)
            assert len(alice_events) == 1 and len(bob_events) == 1
            record = alice_events[0]["data"]["record"]
            assert record["title"] == "alice's" and record["owner"] == alice.id
            assert record["big"] == 9007199254740993 and record["meta"] == {"k": [1, "two"]}
            assert "secret" not in record, "a revoked column must never appear"
            assert all(column["name"] != "secret" for column in alice_events[0]["data"]["columns"])
            assert alice_events[0]["data"]["type"] == "INSERT" and alice_events[0]["data"]["table"] == "todos"
            assert bob_events[0]["data"]["record"]["title"] == "bob's"
            assert anon_events == [], "anon may not select todos"
            assert {event["data"]["record"]["secret"] for event in service_events} == {"hidden-a", "hidden-b"}

            portal.sql(f"update todos set done = true where owner = '{alice.id}'")
            await rtkit.wait_for(lambda: len(alice_events) == 2)
            assert alice_events[1]["data"]["type"] == "UPDATE" and alice_events[1]["data"]["record"]["done"] is True
            await asyncio.sleep(0.3)
            assert len(bob_events) == 1
        finally:
            for socket in (alice_socket, bob_socket, anon_socket, service_socket):
                await socket.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("filter, expected", [
    ("level=eq.3", [3]), ("level=neq.3", [1, 5, 7]), ("level=lt.3", [1]), ("level=lte.3", [1, 3]),
    ("level=gt.3", [5, 7]), ("level=gte.3", [3, 5, 7]), ("level=in.(1,5)", [1, 5]), ("body=eq.it's; drop table todos", [7]),
])
def test_filters(portal, app, filter, expected):
    async def scenario():
        socket, events = await listen(portal, "announcements", portal.anon, event="INSERT", filter=filter)
        try:
            marker = uuid.uuid4().hex[:8]
            portal.sql("insert into announcements (body, level) values "
                       f"('{marker}', 1), ('{marker}', 3), ('{marker}', 5), ('it''s; drop table todos', 7)")
            portal.sql(f"insert into announcements (body, level) values ('{marker}-end', 9)")
            await asyncio.sleep(1.0)
            levels = sorted(event["data"]["record"]["level"] for event in events
                            if event["data"]["record"]["body"] in (marker, "it's; drop table todos"))
            assert levels == expected, events
        finally:
            await socket.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("filter", ["level", "level=like.3", "=eq.1", "level=eq", "level=in.(" + ",".join(["1"] * 500) + ")", "lev\u0000el=eq.1"])
def test_bad_filters_are_refused_at_join(portal, app, filter):
    async def scenario():
        raw = await rtkit.RawSocket.open(portal, vsn="1.0.0")
        try:
            reply = await raw.join("realtime:bad-filter", {"postgres_changes": [{"event": "*", "schema": "public", "table": "announcements", "filter": filter}]})
            assert reply["payload"]["status"] == "error", reply
            assert "filter" in reply["payload"]["response"]["reason"]
        finally:
            await raw.close()

    asyncio.run(scenario())


def test_join_reply_lists_the_bindings_back_in_order_with_ids(portal, app):
    async def scenario():
        raw = await rtkit.RawSocket.open(portal, vsn="2.0.0")
        try:
            bindings = [{"event": "INSERT", "schema": "public", "table": "announcements", "filter": "level=eq.1"},
                        {"event": "*", "schema": "public"}, {"event": "DELETE", "schema": "public", "table": "todos"}]
            reply = await raw.join("realtime:bindings", {"postgres_changes": bindings})
            answered = reply["payload"]["response"]["postgres_changes"]
            assert [{k: v for k, v in entry.items() if k != "id"} for entry in answered] == bindings
            assert len({entry["id"] for entry in answered}) == 3 and all(entry["id"] for entry in answered)
            system = await raw.until(lambda f: isinstance(f, dict) and f["event"] == "system")
            assert system["payload"]["message"] == "Subscribed to PostgreSQL" and system["payload"]["status"] == "ok"
        finally:
            await raw.close()

    asyncio.run(scenario())


def test_a_change_committed_right_after_subscribed_is_delivered_100_times(portal, app):
    async def scenario():
        socket = await rtkit.client(portal, token=portal.anon)
        try:
            missed = []
            for attempt in range(100):
                events: list[dict] = []
                channel = socket.channel(f"live-{attempt}")
                channel.on_postgres_changes("INSERT", lambda payload, events=events: events.append(payload), table="announcements",
                                            schema="public", filter=f"level=eq.{100000 + attempt}")
                await rtkit.subscribed(channel)
                portal.sql(f"insert into announcements (body, level) values ('live', {100000 + attempt})")
                try:
                    await rtkit.wait_for(lambda: events, timeout=10)
                except AssertionError:
                    missed.append(attempt)
                await channel.unsubscribe()
            assert missed == [], f"changes committed right after SUBSCRIBED were missed: {missed}"
        finally:
            await socket.close()

    asyncio.run(scenario())


def test_delete_reaches_subscribers_with_the_primary_key_only_and_never_anon(portal, app):
    alice = app["alice"]

    async def scenario():
        socket, events = await listen(portal, "todos", alice.token, event="DELETE")
        anon_socket, anon_events = await listen(portal, "todos", event="*")
        try:
            portal.sql(f"delete from todos where owner = '{alice.id}'")
            await rtkit.wait_for(lambda: events)
            data = events[0]["data"]
            assert data["type"] == "DELETE" and set(data["old_record"]) == {"id"}
            await asyncio.sleep(0.5)
            assert anon_events == [], "no policy lets anon see todos: it learns of no delete either"
        finally:
            await socket.close()
            await anon_socket.close()

    asyncio.run(scenario())


def test_a_steady_stream_of_rows_reaches_each_owner_and_nobody_else(portal, app):
    """240 transactions of one row each, owned by six users, committed as fast as the console
    takes them: every row reaches its owner exactly once, and nobody else. (The walsender
    may stream a commit a moment before other sessions see it: a row re-selected for the
    RLS check in that moment was judged invisible and lost, about one in five here.)"""
    users = [app["alice"], app["bob"]] + [User(portal, f"stream{n}") for n in range(4)]

    async def scenario():
        listeners = [await listen(portal, "todos", user.token) for user in users]
        filtered = [await listen(portal, "todos", user.token, filter=f"owner=eq.{user.id}") for user in users[:3]]
        try:
            before = portal.sql_rows("select coalesce(max(id), 0) from todos")[0][0]
            owners = [users[(n * 7 + n // 3) % len(users)] for n in range(240)]
            # One transaction each, sent without waiting for deliveries (several land in one batch).
            for n, owner in enumerate(owners):
                portal.sql(f"insert into todos (owner, title) values ('{owner.id}', 'stream {n}')")
            expected = {user.id: sum(1 for owner in owners if owner is user) for user in users}
            await rtkit.wait_for(lambda: all(len(events) >= expected[user.id] for user, (_, events) in zip(users, listeners)), timeout=30)
            await rtkit.wait_for(lambda: all(len(events) >= expected[user.id] for user, (_, events) in zip(users, filtered)), timeout=30)
            await asyncio.sleep(0.5)
            for user, (_, events) in list(zip(users, listeners)) + list(zip(users, filtered)):
                ids = [event["data"]["record"]["id"] for event in events if event["data"]["record"]["id"] > before]
                assert len(ids) == expected[user.id] == len(set(ids)), f"{user.id}: {len(ids)} of {expected[user.id]}"
                assert all(event["data"]["record"]["owner"] == user.id for event in events)
        finally:
            for socket, _ in listeners + filtered:
                await socket.close()

    asyncio.run(scenario())
