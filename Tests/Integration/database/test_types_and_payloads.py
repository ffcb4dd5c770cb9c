"""Values of many Postgres types through REST, both ways, exactly as Postgres's own JSON
encoding (`row_to_json`) gives them; large results; CORS for browser clients."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from dbkit import describe

SETUP = """
create type mood as enum ('sad', 'ok', 'happy');
create table typed (
  id int primary key,
  big bigint,
  num numeric,
  dbl float8,
  flag boolean,
  txt text,
  day date,
  at timestamptz,
  span interval,
  uid uuid,
  doc jsonb,
  plain json,
  words text[],
  grid int[],
  feeling mood,
  raw bytea,
  addr inet
);
insert into typed values
  (1, 9007199254740993, 12345678901234567890.123456789, 1.5e300, true, 'ünïcødé 🚀 "q" \\ ''s''',
   '2024-02-29', '2024-02-29 23:59:59.123456+00', '1 day 02:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '{"a": [1, {"b": null}], "c": "d"}', '{"x":  1}', '{"a b", "c,d", null}', '{{1,2},{3,4}}', 'happy',
   '\\xdeadbeef', '192.168.0.1/24'),
  (2, null, null, 'NaN', null, null, null, null, null, null, 'null', null, '{}', null, null, null, null),
  (3, -9223372036854775808, -0.000000001, '-Infinity', false, '', '0001-01-01', '1970-01-01 00:00:00+00',
   '-1 mons', '00000000-0000-0000-0000-000000000000', '[]', '[]', '{""}', '{}', 'sad', '\\x', '::1');
create table big (id int primary key, filler text);
insert into big select g, repeat('x', 100) from generate_series(1, 20000) g;
"""


@pytest.fixture(scope="module")
def db(portal):
    portal.setup(SETUP, "typed?select=id", "big?select=id&limit=1")
    return portal


def exact(text: str):
    """JSON with numbers kept exact."""
    return json.loads(text, parse_float=Decimal, parse_int=int)


def postgres_json(db, query: str):
    """What Postgres itself encodes, through the console (the value may arrive as text or JSON)."""
    value = db.sql_rows(query)[0][0]
    return exact(value) if isinstance(value, str) else exact(json.dumps(value))


@pytest.mark.parametrize("row", [1, 2, 3])
def test_read_matches_postgres_json_encoding(db, row):
    response = db.rest("GET", "typed", key=db.anon, params={"id": f"eq.{row}"})
    assert response.status_code == 200, describe(response)
    expected = postgres_json(db, f"select json_agg(t)::text from typed t where id = {row}")
    assert exact(response.text) == expected, describe(response)


def test_write_round_trip(db):
    body = {
        "id": 10, "big": 9007199254740993, "num": "12345678901234567890.123456789", "dbl": 0.1, "flag": False,
        "txt": "line\nbreak\ttab \u0000-free ✓", "day": "2000-01-01", "at": "2000-01-01T12:00:00+02:00",
        "span": "PT1H30M", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12", "doc": {"nested": {"list": [1, 2, {"z": None}]}},
        "plain": [1, "two"], "words": ["x", "y,z", "\"q\""], "grid": [[5, 6], [7, 8]], "feeling": "ok",
        "raw": "\\x0102ff", "addr": "10.0.0.1",
    }
    body["txt"] = body["txt"].replace("\u0000", "")
    response = db.rest("POST", "typed", key=db.anon, content=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json", "Prefer": "return=representation"})
    assert response.status_code == 201, describe(response)
    stored = db.sql_rows("select big::text, num::text, txt, at = '2000-01-01 10:00:00+00', span::text, doc::text, "
                         "words::text, grid::text, feeling::text, encode(raw, 'hex'), host(addr) from typed where id = 10")
    assert stored == [["9007199254740993", "12345678901234567890.123456789", body["txt"], True, "01:30:00",
                       '{"nested": {"list": [1, 2, {"z": null}]}}', '{x,"y,z","\\"q\\""}', "{{5,6},{7,8}}", "ok",
                       "0102ff", "10.0.0.1"]], stored
    expected = postgres_json(db, "select json_agg(t)::text from typed t where id = 10")
    assert exact(response.text) == expected, describe(response)


@pytest.mark.parametrize("body,code", [
    ({"id": 11, "feeling": "angry"}, "22P02"),
    ({"id": 11, "day": "2023-02-30"}, "22008"),
    ({"id": 11, "uid": "not-a-uuid"}, "22P02"),
    ({"id": 11, "big": 99999999999999999999}, "22003"),
    ({"id": 11, "grid": [[1, 2], [3]]}, "22P02"),
], ids=["enum", "date", "uuid", "bigint-overflow", "ragged-array"])
def test_bad_typed_values_are_400(db, body, code):
    response = db.rest("POST", "typed", key=db.anon, json=body)
    assert response.status_code == 400, describe(response)
    assert response.json().get("code") == code, describe(response)


def test_filters_on_typed_columns(db):
    def ids(params):
        response = db.rest("GET", "typed", key=db.anon, params={"select": "id", "order": "id", "id": "lt.10", **params})
        assert response.status_code == 200, describe(response)
        return [r["id"] for r in response.json()]

    assert ids({"big": "eq.9007199254740993"}) == [1]
    assert ids({"at": "lt.2000-01-01T00:00:00Z"}) == [3]
    assert ids({"uid": "eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}) == [1]
    assert ids({"feeling": "in.(sad,happy)"}) == [1, 3]
    assert ids({"feeling": "gt.sad"}) == [1]  # enum order, not text order
    assert ids({"dbl": "eq.NaN"}) == [2]
    assert ids({"doc": "cs.{\"c\":\"d\"}"}) == [1]
    assert ids({"words": "cs.{\"c,d\"}"}) == [1]
    assert ids({"day": "gte.2024-01-01"}) == [1]
    assert ids({"addr": "eq.::1"}) == [3]


def test_large_result(db):
    response = db.rest("GET", "big", key=db.anon, params={"select": "id,filler", "order": "id"},
                       headers={"Prefer": "count=exact"})
    assert response.status_code == 200, describe(response)
    rows = response.json()
    assert len(rows) == 20000 and rows[0] == {"id": 1, "filler": "x" * 100} and rows[-1]["id"] == 20000
    assert response.headers.get("content-range") == "0-19999/20000"


def test_large_bulk_insert(db):
    rows = [{"id": 100000 + i, "filler": "y" * 200} for i in range(5000)]
    response = db.rest("POST", "big", key=db.anon, json=rows, headers={"Prefer": "return=minimal"})
    assert response.status_code == 201, describe(response)
    assert db.sql_rows("select count(*) from big where id >= 100000") == [[5000]]


def test_cors_preflight_allows_the_headers_newer_clients_send(db):
    """auth-js sends X-Supabase-Api-Version; a browser preflight must be told it is allowed."""
    response = db.http.request("OPTIONS", f"{db.auth_url}/token", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "apikey, authorization, content-type, x-client-info, x-supabase-api-version"})
    assert 200 <= response.status_code < 300, describe(response)
    allowed = response.headers.get("access-control-allow-headers", "").lower()
    assert "x-supabase-api-version" in allowed and "x-client-info" in allowed, describe(response)
    # Without a list (or with a malformed one) the default list still names it.
    response = db.http.request("OPTIONS", f"{db.rest_url}/typed", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "apikey; evil=\"1\""})
    allowed = response.headers.get("access-control-allow-headers", "").lower()
    assert "x-supabase-api-version" in allowed and "evil" not in allowed, describe(response)


def test_cors_for_browsers(db):
    response = db.http.request("OPTIONS", f"{db.rest_url}/typed", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "apikey, authorization, content-type, prefer"})
    assert 200 <= response.status_code < 300, describe(response)
    assert response.headers.get("access-control-allow-origin") in ("*", "http://localhost:5173"), describe(response)
    allowed = response.headers.get("access-control-allow-headers", "").lower()
    for header in ("apikey", "authorization", "content-type", "prefer"):
        assert header in allowed or allowed == "*", describe(response)
    response = db.rest("GET", "typed", key=db.anon, params={"select": "id", "id": "eq.1"},
                       headers={"Origin": "http://localhost:5173"})
    assert response.status_code == 200, describe(response)
    assert response.headers.get("access-control-allow-origin") in ("*", "http://localhost:5173"), describe(response)
    assert "content-range" in response.headers.get("access-control-expose-headers", "").lower(), describe(response)
    response = db.http.request("OPTIONS", f"{db.auth_url}/token", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    assert 200 <= response.status_code < 300, describe(response)
