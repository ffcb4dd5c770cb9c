"""Hostile values and identifiers in every position a request can carry them.

Each answer is a 4xx JSON error or exactly the rows the value names (values are bound
parameters, identifiers quoted): the table `victim` holds one row per hostile string,
whose `name` IS that string, so `name=eq.<hostile>` must return that row and only it.
After every test (autouse fixture) both tables still exist with all their rows, counted
with the service role through the SQL console.
"""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from dbkit import describe, error_json

HOSTILE = [
    "1; drop table victim",
    "') or 1=1 --",
    "' or '1'='1",
    "\"; drop table canary; --",
    "1 union select 1, 2, 3",
    "Robert'); DROP TABLE victim;--",
    "$$; drop table canary; $$",
    "%' and 1=1 and '%'='",
    "x' || pg_sleep(3) || '",
    "a,b)",
    "(c.eq.1)",
    "name.eq.x",
    "null",
    "NULL",
    "\\",
    "\\\"quoted\\\"",
    "*",
    "%",
    "_",
    "{a,b}",
    "[1,2)",
    "ünïcødé 🚀 ẞ ℌ𝔢𝔩𝔩𝔬 \u202eevil",
    "tab\there\nnewline\r\n",
    "-- comment",
    "/* c */ 1",
    "x" * 10000,
]

ROWS = list(enumerate(HOSTILE, start=1))


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SETUP = f"""
create table victim (id int primary key, name text, tags text[], meta jsonb, "odd ""col""; name" text);
create table canary (id int primary key);
insert into canary values (1);
insert into victim (id, name, tags, meta, "odd ""col""; name") values
{",".join(f"({i}, {literal(h)}, array[{literal(h)}], jsonb_build_object('k', {literal(h)}), {literal(h)})" for i, h in ROWS)};
create function echo(t text) returns text language sql immutable as $$ select t $$;
"""


@pytest.fixture(scope="module")
def db(portal):
    portal.setup(SETUP, "victim?select=id", "canary?select=id")
    return portal


@pytest.fixture(autouse=True)
def tables_intact(db):
    yield
    assert db.sql_rows("select count(*), sum(id), bool_and(name is not null) from victim") == [[len(ROWS), sum(range(1, len(ROWS) + 1)), True]]
    assert db.sql_rows("select count(*) from canary") == [[1]]
    names = [row[0] for row in db.sql_rows("select name from victim order by id")]
    assert names == HOSTILE, "a row of victim changed"


def keys(db):
    return {"anon": db.anon, "service": db.service}


def check(response, expected_ids=None):
    """4xx JSON, or 200 with exactly the expected ids (if given)."""
    assert response.status_code < 500, describe(response)
    if 400 <= response.status_code < 500:
        error_json(response)
        return
    assert response.status_code in (200, 206), describe(response)
    if expected_ids is not None:
        got = sorted(row["id"] for row in response.json())
        assert got == expected_ids, describe(response)


@pytest.mark.parametrize("role", ["anon", "service"])
@pytest.mark.parametrize("index,value", ROWS, ids=[f"v{i}" for i, _ in ROWS])
def test_eq_value_returns_exactly_its_row(db, role, index, value):
    response = db.rest("GET", "victim", key=keys(db)[role], params={"select": "id", "name": f"eq.{value}"})
    if len(value) > 1000:
        check(response, [index])  # A server may refuse a very long URL (414/431).
        return
    assert response.status_code == 200, describe(response)
    assert [row["id"] for row in response.json()] == [index], describe(response)


@pytest.mark.parametrize("index,value", ROWS[:-1], ids=[f"v{i}" for i, _ in ROWS[:-1]])
def test_client_filters_with_hostile_values(db, index, value):
    table = db.client(db.anon).table("victim")
    assert [r["id"] for r in table.select("id").eq("name", value).execute().data] == [index]
    assert [r["id"] for r in table.select("id").in_("name", [value, "no-such-name"]).execute().data] == [index]
    assert [r["id"] for r in table.select("id").contains("tags", [value]).execute().data] == [index]
    assert [r["id"] for r in table.select("id").contains("meta", {"k": value}).execute().data] == [index]
    assert sorted(r["id"] for r in table.select("id").neq("name", value).execute().data) == [
        i for i, _ in ROWS if i != index]


@pytest.mark.parametrize("index,value", ROWS, ids=[f"v{i}" for i, _ in ROWS])
def test_quoted_value_inside_or(db, index, value):
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    response = db.rest("GET", "victim", params={"select": "id", "or": f"(name.eq.{quoted},id.eq.-1)"})
    check(response, [index])


@pytest.mark.parametrize("operator", ["neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch",
                                      "in", "is", "isdistinct", "fts", "plfts", "phfts", "wfts", "cs", "cd",
                                      "ov", "sl", "sr", "nxr", "nxl", "adj", "not.eq", "eq(any)", "like(all)"])
@pytest.mark.parametrize("value", HOSTILE[:9] + ["x" * 10000], ids=[f"v{i}" for i in range(1, 10)] + ["long"])
def test_every_operator_with_hostile_values(db, operator, value):
    column = {"cs": "tags", "cd": "tags", "ov": "tags", "sl": "id", "sr": "id", "nxr": "id", "nxl": "id",
              "adj": "id"}.get(operator, "name")
    for key in (db.anon, db.service):
        check(db.rest("GET", "victim", key=key, params={"select": "id", column: f"{operator}.{value}"}))


@pytest.mark.parametrize("raw", [
    "name=eq.a%00b", "name=eq.%00", "name=in.(%00)", "name=like.%00*", "name%00=eq.1", "select=id%00",
    "name=eq.%ff%fe", "name=eq.%c0%af", "or=(name.eq.%00)", "order=id%00",
], ids=["nul-in-value", "only-nul", "nul-in-list", "nul-in-pattern", "nul-in-column", "nul-in-select",
        "invalid-utf8", "overlong-utf8", "nul-in-or", "nul-in-order"])
def test_nul_and_invalid_bytes(db, raw):
    response = db.http.get(f"{db.rest_url}/victim?{raw}", headers=db.headers())
    check(response, [])


COLUMNS = {"id", "name", "tags", "meta", 'odd "col"; name'}

IDENTIFIERS = [
    "name; drop table canary",
    "name\"; drop table canary; --",
    "\"name\"",
    "name)",
    "(select 1)",
    "pg_sleep(3)",
    "victim.name",
    "public.canary.id",
    "name::text; drop table canary",
    "*",
    "ünï",
    "x" * 300,
]


@pytest.mark.parametrize("ident", IDENTIFIERS, ids=[f"i{i}" for i in range(len(IDENTIFIERS))])
def test_hostile_identifiers_everywhere(db, ident):
    for params in (
        {ident: "eq.1"},
        {"select": ident},
        {"select": f"id,{ident}"},
        {"select": f"id,alias:{ident}"},
        {"select": f"id,{ident}(*)"},
        {"select": f"id,name::{ident}"},
        {"order": ident},
        {"order": f"{ident}.desc"},
        {"order": f"id.{ident}"},
        {"or": f"({ident}.eq.1,id.eq.1)"},
        {"not.or": f"({ident}.eq.1)"},
        {f"{ident}.order": "id"},
        {"limit": ident},
        {"offset": ident},
    ):
        response = db.rest("GET", "victim", params=params)
        assert response.status_code < 500, describe(response)
        if response.status_code < 300:
            # A harmless reading (say `*`): real rows with real columns only.
            rows = response.json()
            assert isinstance(rows, list) and len(rows) <= len(ROWS), describe(response)
            for row in rows:
                assert set(row) <= COLUMNS | {"alias"}, describe(response)
        else:
            error_json(response)


@pytest.mark.parametrize("ident", IDENTIFIERS + ["id); drop table canary; --", "id,name"],
                         ids=[f"i{i}" for i in range(len(IDENTIFIERS) + 2)])
def test_hostile_on_conflict_and_columns(db, ident):
    response = db.rest("POST", "victim", params={"on_conflict": ident}, json={"id": 1, "name": HOSTILE[0]},
                       headers={"Prefer": "resolution=merge-duplicates,return=minimal"})
    # "id,name" is no unique constraint; the rest are no columns at all.
    assert 400 <= response.status_code < 500, describe(response)
    error_json(response)
    response = db.rest("POST", "victim", params={"columns": ident}, json={"id": 1000, "name": "x"},
                       headers={"Prefer": "return=minimal"})
    assert response.status_code < 500, describe(response)
    if response.status_code < 300:
        db.sql("delete from victim where id >= 1000")
    else:
        error_json(response)


@pytest.mark.parametrize("path", [
    "victim;drop table canary",
    "victim%3Bdrop%20table%20canary",
    "canary\"; drop table canary; --",
    "auth.users",
    "pg_catalog.pg_authid",
    "pg_authid",
    "..%2F..%2Fsql%2Fv1%2Fquery",
    "victim%00",
    "information_schema.tables",
], ids=["semicolon", "encoded-semicolon", "quote", "auth-schema", "catalog", "catalog-bare", "traversal",
        "nul", "information-schema"])
def test_hostile_table_names(db, path):
    for key in (db.anon, db.service):
        response = db.http.get(f"{db.rest_url}/{path}", headers=db.headers(key))
        assert 400 <= response.status_code < 500, describe(response)


def test_internal_schemas_are_not_exposed(db):
    for profile in ("auth", "meltybase_internal", "pg_catalog", "information_schema"):
        for key in (db.anon, db.service):
            response = db.rest("GET", "users", key=key, headers={"Accept-Profile": profile})
            assert 400 <= response.status_code < 500, describe(response)
            assert "encrypted_password" not in response.text


@pytest.mark.parametrize("name", [
    "pg_sleep", "version", "current_setting", "set_config", "pg_read_file", "echo;drop table canary",
    "echo\"; drop table canary; --", "auth.uid", "pg_catalog.pg_sleep", "dblink", "lo_import",
], ids=lambda n: n[:20])
def test_rpc_names(db, name):
    encoded = urllib.parse.quote(name, safe="")
    for method, kwargs in (("POST", {"json": {"seconds": 3, "setting_name": "role", "t": "x"}}),
                           ("GET", {"params": {"seconds": "3", "t": "x"}})):
        response = db.rest(method, f"rpc/{encoded}", **kwargs)
        assert 400 <= response.status_code < 500, describe(response)
        error_json(response)


@pytest.mark.parametrize("index,value", ROWS[:12], ids=[f"v{i}" for i, _ in ROWS[:12]])
def test_rpc_arguments_are_values(db, index, value):
    response = db.rest("POST", "rpc/echo", key=db.anon, json={"t": value})
    assert response.status_code == 200 and response.json() == value, describe(response)
    response = db.rest("GET", "rpc/echo", key=db.anon, params={"t": value})
    assert response.status_code == 200 and response.json() == value, describe(response)


def test_hostile_rpc_argument_names(db):
    for args in ({"t); drop table canary; --": "x"}, {"t\"": "x"}, {"": "x"}, {"t": "x", "t2;": "y"}):
        response = db.rest("POST", "rpc/echo", key=db.anon, json=args)
        assert 400 <= response.status_code < 500, describe(response)


def test_writes_with_hostile_values_round_trip(db):
    try:
        writes_round_trip(db)
    finally:
        db.sql("delete from victim where id >= 2000")


def writes_round_trip(db):
    for offset, value in enumerate(HOSTILE):
        response = db.rest("POST", "victim", key=db.anon, json={"id": 2000 + offset, "name": value, "tags": [value]},
                           headers={"Prefer": "return=representation"})
        assert response.status_code == 201, describe(response)
        assert response.json() == [{"id": 2000 + offset, "name": value, "tags": [value], "meta": None,
                                    'odd "col"; name': None}], describe(response)
    stored = db.sql_rows("select name from victim where id >= 2000 order by id")
    assert [row[0] for row in stored] == HOSTILE
    # PATCH and DELETE whose filters match nothing change nothing.
    for value in ("x' or '1'='1", "1; delete from victim", "') or true --"):
        response = db.rest("PATCH", "victim", params={"name": f"eq.{value}"}, json={"name": "pwned"})
        assert response.status_code in (200, 204), describe(response)
        response = db.rest("DELETE", "victim", params={"name": f"eq.{value}"})
        assert response.status_code in (200, 204), describe(response)
    assert db.sql_rows("select count(*) from victim where name = 'pwned'") == [[0]]
    # PATCH through a hostile value touches exactly its row.
    response = db.rest("PATCH", "victim", params={"name": f"eq.{HOSTILE[1]}", "id": "gte.2000", "select": "id"},
                       json={"tags": ["patched"]}, headers={"Prefer": "return=representation"})
    assert response.status_code == 200 and response.json() == [{"id": 2001}], describe(response)


def test_hostile_json_keys_in_bodies(db):
    for body in ({"id": 3000, "name; drop table canary": "x"}, {"id": 3000, "\"name\"": "x"},
                 {"id": 3000, "": "x"}, [{"id": 3000}, {"id); drop table canary; --": 1}]):
        response = db.rest("POST", "victim", json=body)
        assert 400 <= response.status_code < 500, describe(response)
        error_json(response)
    for body in ({"name; drop table canary": "x"}, {"id = id; drop table canary": 1}):
        response = db.rest("PATCH", "victim", params={"id": "eq.1"}, json=body)
        assert 400 <= response.status_code < 500, describe(response)
    assert db.sql_rows("select count(*) from victim where id = 3000") == [[0]]


def test_quoted_column_name_round_trips(db):
    response = db.rest("GET", "victim", params={"select": "*", "id": "eq.2"})
    assert response.status_code == 200, describe(response)
    assert response.json()[0]['odd "col"; name'] == HOSTILE[1], describe(response)


@pytest.mark.parametrize("header,value", [
    ("Accept-Profile", "public; drop table canary"),
    ("Accept-Profile", "public\"; drop table canary; --"),
    ("Content-Profile", "public; drop table canary"),
    ("Prefer", "count=exact; drop table canary"),
    ("Prefer", "return=representation,resolution=merge-duplicates\"; drop"),
    ("Prefer", "tx=rollback"),
    ("Range", "0-1; drop table canary"),
    ("Range", "-5--1"),
    ("Range", "99999999999999999999-1"),
    ("Accept", "application/vnd.pgrst.object+json; drop"),
    ("Accept", "text/csv\"; drop table canary"),
], ids=lambda v: v[:16])
def test_hostile_headers(db, header, value):
    try:
        for method in ("GET", "POST"):
            kwargs = {"json": {"id": 4000, "name": "h"}} if method == "POST" else {"params": {"select": "id"}}
            response = db.rest(method, "victim", headers={header: value}, **kwargs)
            assert response.status_code < 500, describe(response)
            if response.status_code >= 400:
                error_json(response)
    finally:
        db.sql("delete from victim where id = 4000")


def test_huge_and_deep_inputs(db):
    # A very long filter list, a deep or-tree, a large body: 4xx or a correct answer, never 5xx.
    params = [("select", "id")] + [("id", f"neq.{i}") for i in range(1000, 1400)]
    check(db.rest("GET", "victim", params=params), [i for i, _ in ROWS])
    deep = "id.eq.1"
    for _ in range(200):
        deep = f"or({deep},id.eq.2)"
    check(db.rest("GET", "victim", params={"select": "id", "or": f"({deep})"}), [1, 2])
    big = [{"id": 5000 + i, "name": "n" * 100} for i in range(2000)]
    try:
        response = db.rest("POST", "victim", json=big, headers={"Prefer": "return=minimal"})
        assert response.status_code < 500, describe(response)
    finally:
        db.sql("delete from victim where id >= 5000")


@pytest.mark.parametrize("body", [b"[" * 100000 + b"]" * 100000, b'{"a":' * 50000 + b"1" + b"}" * 50000],
                         ids=["deep-array", "deep-object"])
def test_deeply_nested_json_body(kernel_factory, body):
    """A JSON bomb must not crash the kernel (own kernel: a crash must not take the suite down)."""
    own = kernel_factory()
    portal = own.create_portal("bomb")
    portal.setup("create table t (id int primary key, doc jsonb)", "t?select=id")
    for path in ("t", "rpc/nothing"):
        try:
            response = portal.http.post(f"{portal.rest_url}/{path}", content=body,
                                        headers={**portal.headers(), "Content-Type": "application/json"})
            assert response.status_code < 500, describe(response)
        except httpx.RemoteProtocolError:
            pass  # Closing the connection on an oversized body is an answer too.
    assert own.process.poll() is None, f"the kernel died:\n{own.log_tail()}"
    assert portal.rest("GET", "t").status_code == 200


@pytest.mark.parametrize("value", HOSTILE[:9], ids=[f"v{i}" for i in range(1, 10)])
def test_hostile_json_path_keys(db, value):
    """JSON keys in arrows are values too: no such key, so no match, a null, or a 4xx."""
    for params, expected in (
        ({"select": "id", f"meta->>{value}": "eq.x"}, []),
        ({"select": "id", "or": f"(meta->>{value}.eq.x,id.eq.-1)"}, []),
        ({"select": f"id,alias:meta->>{value}", "id": "eq.1"}, [{"id": 1, "alias": None}]),
        ({"select": "id", "order": f"meta->>{value}.desc", "id": "eq.1"}, [{"id": 1}]),
    ):
        response = db.rest("GET", "victim", params=params)
        assert response.status_code < 500, describe(response)
        if response.status_code < 300:
            assert response.json() == expected, describe(response)
        else:
            error_json(response)


@pytest.mark.parametrize("index,value", ROWS[:12], ids=[f"v{i}" for i, _ in ROWS[:12]])
def test_hostile_values_in_embedded_filters(db, index, value):
    db.sql("create table if not exists victim_child (id int primary key, victim_id int references victim(id), note text);"
           "insert into victim_child select id, id, name from victim where id <= 12 on conflict do nothing;")
    db.wait_for_rest("victim_child?select=id")
    response = db.rest("GET", "victim", params={"select": "id,victim_child(note)", "victim_child.note": f"eq.{value}",
                                                "id": f"in.({index},{index % 12 + 1})", "order": "id"})
    assert response.status_code == 200, describe(response)
    rows = {r["id"]: r["victim_child"] for r in response.json()}
    assert rows[index] == [{"note": value}] and rows[index % 12 + 1] == [], describe(response)
    response = db.rest("GET", "victim", params={"select": "id,victim_child!inner(note)", "victim_child.note": f"eq.{value}"})
    assert response.status_code == 200 and [r["id"] for r in response.json()] == [index], describe(response)
