"""`[plugins.database.config]` on a kernel of this module's own: backpressure (a tiny pool
answers 503 with Retry-After when full), a second exposed schema selected with
Accept-Profile/Content-Profile, and max_rows."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from dbkit import describe, error_json

CONFIG = """
[plugins.database.config]
pool_size = 1
max_waiting = 1
schemas = ["public", "api"]
max_rows = 3
"""

SETUP = """
create table nums (id int primary key);
insert into nums select generate_series(1, 6);
create function slow(seconds float8 default 1.5) returns int language sql volatile as $$ select pg_sleep(seconds); select 1 $$;
create schema api;
grant usage on schema api to anon, authenticated, service_role;
create table api.things (id int primary key, label text);
insert into api.things values (1, 'in api');
grant all on api.things to anon, authenticated, service_role;
create function api.api_hello() returns text language sql stable as $$ select 'api'::text $$;
grant execute on function api.api_hello() to anon, authenticated, service_role;
create table public.things (id int primary key, label text);
insert into public.things values (1, 'in public');
"""


@pytest.fixture(scope="module")
def db(module_kernel_factory):
    kernel = module_kernel_factory(CONFIG)
    portal = kernel.create_portal("conf")
    portal.setup(SETUP, "nums?select=id", "things?select=id")
    for _ in range(75):
        if portal.rest("GET", "things", headers={"Accept-Profile": "api"}).status_code == 200:
            break
        time.sleep(0.2)
    return portal


def test_full_pool_answers_503_with_retry_after(db):
    answers: list[tuple] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def call():
        start.wait()
        try:
            with httpx.Client(timeout=httpx.Timeout(20.0)) as client:
                response = client.post(f"{db.rest_url}/rpc/slow", json={}, headers=db.headers(db.anon))
            entry = (response.status_code, response.headers.get("retry-after"), response.text[:200])
        except httpx.HTTPError as error:
            entry = ("exception", None, repr(error))
        with lock:
            answers.append(entry)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(str(a[0]) for a in answers)
    assert len(answers) == 8, answers
    assert all(a[0] in (200, 503) for a in answers), answers
    # One connection and one waiting place for eight simultaneous 1.5 s calls.
    assert statuses.count("503") >= 1 and statuses.count("200") >= 1, statuses
    for status, retry_after, body in answers:
        if status == 503:
            assert retry_after and retry_after.isdigit(), answers
    # And the pool is usable again afterwards.
    response = db.rest("GET", "nums", key=db.anon, params={"select": "id", "id": "eq.1"})
    assert response.status_code == 200 and response.json() == [{"id": 1}], describe(response)


def test_max_rows_caps_reads(db):
    response = db.rest("GET", "nums", key=db.anon, params={"select": "id", "order": "id"})
    assert response.status_code == 200 and [r["id"] for r in response.json()] == [1, 2, 3], describe(response)
    response = db.rest("GET", "nums", key=db.anon, params={"select": "id", "order": "id", "limit": "2", "offset": "1"})
    assert [r["id"] for r in response.json()] == [2, 3], describe(response)


def test_default_profile_is_the_first_schema(db):
    response = db.rest("GET", "things", key=db.anon, params={"select": "label"})
    assert response.status_code == 200 and response.json() == [{"label": "in public"}], describe(response)


def test_accept_profile_selects_the_schema(db):
    response = db.rest("GET", "things", key=db.anon, params={"select": "label"}, headers={"Accept-Profile": "api"})
    assert response.status_code == 200 and response.json() == [{"label": "in api"}], describe(response)
    client = db.client(db.anon)
    assert client.schema("api").table("things").select("label").execute().data == [{"label": "in api"}]
    assert client.schema("api").rpc("api_hello", {}).execute().data == "api"


def test_content_profile_writes_to_the_schema(db):
    response = db.rest("POST", "things", key=db.anon, json={"id": 2, "label": "posted"},
                       headers={"Content-Profile": "api", "Prefer": "return=representation"})
    assert response.status_code == 201 and response.json() == [{"id": 2, "label": "posted"}], describe(response)
    assert db.sql_rows("select label from api.things where id = 2") == [["posted"]]
    assert db.sql_rows("select count(*) from public.things where id = 2") == [[0]]


def test_unexposed_profiles_are_406(db):
    for profile in ("nope", "auth", "meltybase_internal", "pg_catalog"):
        response = db.rest("GET", "things", key=db.anon, headers={"Accept-Profile": profile})
        assert response.status_code == 406, describe(response)
        assert error_json(response).get("code") == "PGRST106", describe(response)


def test_rpc_is_resolved_in_the_profile_schema(db):
    assert db.rest("POST", "rpc/api_hello", key=db.anon, json={}).status_code == 404
    response = db.rest("POST", "rpc/api_hello", key=db.anon, json={}, headers={"Content-Profile": "api"})
    assert response.status_code == 200 and response.json() == "api", describe(response)
