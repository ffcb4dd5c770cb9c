"""PostgREST's output formats and preferences beyond JSON: CSV (`Accept: text/csv`), execution
plans (`application/vnd.pgrst.plan`, only with `plan_enabled`), counts and HEAD on rpc,
`Prefer: max-affected` with `handling=strict|lenient`, content negotiation (406), and the API
root (`GET /rest/v1/`) listing only what the requesting role may use.

Through postgrest-py (supabase-py's `.csv()`, `.explain()`, `.rpc(count=, head=)`) where the
client has the call, raw HTTP for the rest."""

from __future__ import annotations

import json
import time

import pytest
from postgrest import CountMethod
from postgrest.exceptions import APIError

from dbkit import describe, error_json

SETUP = """
create table fruits (id int primary key, name text not null, note text, price numeric);
insert into fruits values
  (1, 'apple', 'crisp, red', 1.5),
  (2, 'banana', 'says "hi"', 0.25),
  (3, 'cherry', null, 7),
  (4, 'date', 'multi word', 3);
create table cities (id int primary key, fruit_id int references fruits, name text);
insert into cities values (1, 1, 'Paris'), (2, 1, 'Lyon'), (3, 2, 'Quito');
create function fruits_named(pattern text) returns setof fruits language sql stable as
  $$ select * from fruits where name like pattern order by id $$;
create function fruit_count() returns int language sql stable as $$ select count(*)::int from fruits $$;
create table staff_only (id int primary key, secret text);
revoke all on staff_only from anon, authenticated;
create function staff_report() returns int language sql as $$ select 1 $$;
revoke execute on function staff_report() from public, anon, authenticated;
"""


@pytest.fixture(scope="module")
def db(portal):
    portal.setup(SETUP, "fruits?select=id", "cities?select=id", "rpc/fruit_count")
    return portal


@pytest.fixture(scope="module")
def service(db):
    return db.client(db.service)


# --- CSV --------------------------------------------------------------------------------


def test_csv_through_postgrest_py(service):
    response = service.table("fruits").select("id, name").in_("name", ["apple", "banana"]).order("id").csv().execute()
    assert response.data == "id,name\n1,apple\n2,banana", response.data


def test_csv_quotes_commas_quotes_and_spaces_and_leaves_nulls_empty(db):
    response = db.rest("GET", "fruits?select=name,note&order=id", headers={"Accept": "text/csv"})
    assert response.status_code == 200, describe(response)
    assert response.headers["content-type"].startswith("text/csv"), response.headers
    assert response.text == 'name,note\napple,"crisp, red"\nbanana,"says ""hi"""\ncherry,\ndate,"multi word"', response.text


def test_csv_of_no_rows_is_empty_and_ranges_still_apply(db):
    empty = db.rest("GET", "fruits?select=id&id=gt.100", headers={"Accept": "text/csv"})
    assert empty.status_code == 200, describe(empty)
    assert empty.text.strip() == "", empty.text
    page = db.rest("GET", "fruits?select=id&order=id&limit=2&offset=1", headers={"Accept": "text/csv", "Prefer": "count=exact"})
    assert page.status_code == 206, describe(page)
    assert page.text == "id\n2\n3", page.text
    assert page.headers["content-range"] == "1-2/4", page.headers


def test_csv_from_rpc_and_from_a_mutation_with_representation(db):
    rpc = db.rest("GET", "rpc/fruits_named?pattern=%25an%25&select=name", headers={"Accept": "text/csv"})
    assert rpc.status_code == 200, describe(rpc)
    assert rpc.text == "name\nbanana", rpc.text
    patched = db.rest(
        "PATCH", "fruits?id=eq.4&select=id,note", json={"note": "sweet"},
        headers={"Accept": "text/csv", "Prefer": "return=representation"})
    assert patched.status_code == 200, describe(patched)
    assert patched.text == "id,note\n4,sweet", patched.text


def test_unknown_media_type_is_406_and_common_browser_accepts_get_json(db):
    refused = db.rest("GET", "fruits", headers={"Accept": "application/xml"})
    assert refused.status_code == 406, describe(refused)
    assert error_json(refused)["code"] == "PGRST107"
    for accept in ("application/json, text/plain, */*", "*/*", "application/*;q=0.9", ""):
        response = db.rest("GET", "fruits?select=id&limit=1", headers={"Accept": accept})
        assert response.status_code == 200, (accept, describe(response))
        assert response.json() == [{"id": 1}], (accept, response.text)
    hostile = db.rest("GET", "fruits", headers={"Accept": "x/" + "y" * 5000})
    assert hostile.status_code == 406, describe(hostile)


# --- plans ------------------------------------------------------------------------------


def test_plans_are_refused_unless_enabled(service, db):
    with pytest.raises(APIError) as refused:
        service.table("fruits").select("*").explain().execute()
    assert refused.value.code == "PGRST107", refused.value
    raw = db.rest("GET", "fruits", headers={"Accept": "application/vnd.pgrst.plan+json"})
    assert raw.status_code == 406, describe(raw)
    assert "plan_enabled" in error_json(raw)["hint"]


@pytest.fixture(scope="module")
def planning(module_kernel_factory):
    kernel = module_kernel_factory("[plugins.database.config]\nplan_enabled = true\n")
    portal = kernel.create_portal("plans")
    portal.setup(SETUP, "fruits?select=id", "cities?select=id", "rpc/fruit_count")
    return portal


def test_text_plan_through_explain_shows_the_statement_with_postgrest_aliases(planning):
    client = planning.client(planning.service)
    plan = (
        client.table("fruits").select("name, cities!inner(name)")
        .or_("fruit_id.eq.1,name.eq.Quito", reference_table="cities")
        .explain(analyze=True, verbose=True, buffers=True, settings=True, wal=True)
        .execute())
    assert isinstance(plan, str), plan
    assert "Aggregate" in plan and "Execution Time" in plan, plan
    # The request's table keeps its name, embeds are <table>_<n>, values are bound constants.
    assert "((cities_1.fruit_id = fruits.id) AND ((cities_1.fruit_id = 1) OR (cities_1.name = 'Quito'::text)))" in plan, plan


def test_json_plan_and_its_content_type(planning):
    response = planning.rest(
        "GET", "fruits?select=id&id=eq.1",
        headers={"Accept": 'application/vnd.pgrst.plan+json; for="application/json"; options=analyze'})
    assert response.status_code == 200, describe(response)
    assert response.headers["content-type"].startswith('application/vnd.pgrst.plan+json; for="application/json"'), response.headers
    plan = response.json()
    assert plan[0]["Plan"]["Node Type"] == "Aggregate", plan
    assert "Actual Rows" in json.dumps(plan), plan
    client = planning.client(planning.service)
    through_client = client.table("fruits").select("id").explain(format="json").execute()
    assert through_client.data[0]["Plan"]["Node Type"] == "Aggregate", through_client.data


def test_analyzed_mutation_plan_changes_nothing(planning):
    before = planning.sql_rows("select name from fruits where id = 3")[0][0]
    response = planning.rest(
        "PATCH", "fruits?id=eq.3", json={"name": "changed"},
        headers={"Accept": "application/vnd.pgrst.plan; options=analyze"})
    assert response.status_code == 200, describe(response)
    assert "Update on" in response.text, response.text
    assert planning.sql_rows("select name from fruits where id = 3")[0][0] == before


def test_plans_for_rpc_and_bad_plan_options(planning):
    response = planning.rest("GET", "rpc/fruits_named?pattern=a%25", headers={"Accept": "application/vnd.pgrst.plan+text"})
    assert response.status_code == 200, describe(response)
    assert "Function Scan" in response.text or "Aggregate" in response.text, response.text
    bad = planning.rest("GET", "fruits", headers={"Accept": "application/vnd.pgrst.plan; options=drop table"})
    assert bad.status_code == 406, describe(bad)
    # WAL without ANALYZE: Postgres refuses the option pair; the client gets a 4xx.
    wal = planning.rest("GET", "fruits", headers={"Accept": "application/vnd.pgrst.plan; options=wal"})
    assert 400 <= wal.status_code < 500, describe(wal)


def test_a_plan_is_run_as_the_callers_role(planning):
    refused = planning.rest(
        "GET", "staff_only", key=planning.anon, headers={"Accept": "application/vnd.pgrst.plan; options=analyze"})
    assert refused.status_code == 401, describe(refused)


# --- rpc counts and HEAD -----------------------------------------------------------------


def test_rpc_get_with_exact_count(service):
    response = service.rpc("fruits_named", {"pattern": "%a%"}, get=True, count=CountMethod.exact).select("name").limit(2).execute()
    assert response.count == 3, response  # apple, banana, date
    assert response.data == [{"name": "apple"}, {"name": "banana"}], response.data


def test_rpc_head_count_has_no_body(service, db):
    response = service.rpc("fruits_named", {"pattern": "%an%"}, head=True, count=CountMethod.exact).execute()
    assert response.count == 1, response
    assert response.data == [], response.data
    raw = db.rest("HEAD", "rpc/fruits_named?pattern=%25", headers={"Prefer": "count=exact"})
    assert raw.status_code == 200, describe(raw)
    assert raw.content == b"" and raw.headers["content-range"] == "0-3/4", raw.headers
    scalar = db.rest("HEAD", "rpc/fruit_count")
    assert scalar.status_code == 200 and scalar.content == b"", describe(scalar)


def test_rpc_post_with_count_runs_the_function_once(db):
    db.sql("create table calls (n serial primary key); "
           "create function logged_fruits() returns setof fruits language sql as "
           "$$ insert into calls default values; select * from fruits order by id $$;")
    deadline = time.monotonic() + 15
    while db.rest("POST", "rpc/logged_fruits", json={}).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)  # the schema cache reloads after the DDL
    db.sql("truncate calls")
    response = db.rest("POST", "rpc/logged_fruits?limit=1", json={}, headers={"Prefer": "count=exact"})
    assert response.status_code in (200, 206), describe(response)
    assert response.headers["content-range"] == "0-0/4", response.headers
    assert db.count("calls") == 1


# --- max-affected and handling ---------------------------------------------------------


@pytest.fixture
def boxes(db):
    db.sql("drop table if exists boxes; create table boxes (id int primary key, tag text); "
           "insert into boxes select g, 'old' from generate_series(1, 5) g;")
    db.wait_for_rest("boxes?select=id")
    return db


def test_max_affected_with_strict_handling_rolls_back_and_explains(boxes):
    refused = boxes.rest("PATCH", "boxes?id=lte.3", json={"tag": "new"}, headers={"Prefer": "handling=strict, max-affected=2"})
    assert refused.status_code == 400, describe(refused)
    body = error_json(refused)
    assert body["code"] == "PGRST124" and "3" in body["details"], body
    assert boxes.sql_rows("select count(*) from boxes where tag = 'new'")[0][0] == 0
    deleted = boxes.rest("DELETE", "boxes", headers={"Prefer": "handling=strict, max-affected=4, return=representation"})
    assert deleted.status_code == 400, describe(deleted)
    assert boxes.count("boxes") == 5


def test_max_affected_within_the_limit_applies(boxes):
    response = boxes.rest("PATCH", "boxes?id=lte.2", json={"tag": "new"}, headers={"Prefer": "handling=strict, max-affected=2"})
    assert response.status_code == 204, describe(response)
    assert boxes.sql_rows("select count(*) from boxes where tag = 'new'")[0][0] == 2


def test_lenient_handling_ignores_max_affected_and_unknown_preferences(boxes):
    response = boxes.rest("DELETE", "boxes?id=gt.1", headers={"Prefer": "max-affected=1, frobnicate=yes"})
    assert response.status_code == 204, describe(response)
    assert boxes.count("boxes") == 1


def test_strict_handling_refuses_unknown_and_malformed_preferences(boxes):
    for prefer in ("handling=strict, frobnicate=yes", "handling=strict, max-affected=-1",
                   "handling=strict, max-affected=" + "9" * 40, "handling=strict, max-affected=1e3",
                   "handling=strict, max-affected=\u0661", "handling=strict, return=everything"):
        response = boxes.rest("DELETE", "boxes", headers={"Prefer": prefer.encode("utf-8")})
        assert response.status_code == 400, (prefer, describe(response))
        assert error_json(response)["code"] == "PGRST122", (prefer, response.text)
    assert boxes.count("boxes") == 5


def test_preference_applied_lists_only_what_was_applied(db):
    response = db.rest("GET", "fruits?select=id", headers={"Prefer": "count=exact, frobnicate=yes"})
    assert response.status_code == 200, describe(response)
    assert response.headers["preference-applied"] == "count=exact", response.headers


# --- the API root -------------------------------------------------------------------------


def test_api_root_lists_only_what_the_role_may_use(db):
    anon = db.rest("GET", "", key=db.anon)
    assert anon.status_code == 200, describe(anon)
    anon_paths = anon.json()["paths"]
    assert "/fruits" in anon_paths and "/rpc/fruit_count" in anon_paths, sorted(anon_paths)
    assert "/staff_only" not in anon_paths and "/rpc/staff_report" not in anon_paths, sorted(anon_paths)
    assert "staff_only" not in anon.json().get("definitions", {})
    service = db.rest("GET", "")
    assert "/staff_only" in service.json()["paths"] and "/rpc/staff_report" in service.json()["paths"], sorted(service.json()["paths"])
