"""Sentient SQL's RLS proposals on the evaluation schema (Benchmarks/sql-eval/schema.sql):
each proposal is tried as two synthetic users and anon in a rolled-back transaction, the
owner proposal is applied as a migration, and two real users then see only their own rows
through the REST API."""

from __future__ import annotations

import time
from pathlib import Path

import dbkit
import pytest

from dbkit import describe

SCHEMA = (Path(__file__).resolve().parents[3] / "Benchmarks" / "sql-eval" / "schema.sql").read_text()
PASSWORD = "correct-Horse-battery-9"


@pytest.fixture(scope="module")
def shop(new_portal):
    portal = new_portal()
    portal.sql(SCHEMA)
    return portal


def proposals(portal, table: str | None = None, key: str | None = None):
    params = {"table": table} if table else None
    return portal.request("GET", f"{portal.base}/intelligence/v1/rls/proposals", key=key, params=params)


def test_proposals_classify_the_sample_schema(shop):
    response = proposals(shop)
    assert response.status_code == 200, describe(response)
    by_table = {item["id"]: item for item in response.json()["proposals"]}
    assert by_table["public.todos"]["kind"] == "owner"
    assert by_table["public.todos"]["column"] == "user_id"
    assert by_table["public.memberships"]["kind"] == "owner"
    assert by_table["public.projects"]["kind"] == "tenant"
    assert by_table["public.projects"]["membership"] == "public.memberships"
    assert by_table["public.orgs"]["kind"] == "tenant_root"
    assert by_table["public.products"]["kind"] == "public_read"
    assert "reporting.monthly_sales" not in by_table  # not an exposed schema
    # The trials: every proposal passed, nothing stayed behind.
    for item in by_table.values():
        assert item["trial"]["tried"], item
        assert item["trial"]["correct"], item
    assert shop.count("public.todos") == 0
    assert shop.sql_rows("select relrowsecurity from pg_class where oid = 'public.todos'::regclass") == [[False]]


def test_owner_trial_shows_each_user_only_its_rows(shop):
    response = proposals(shop, "todos")
    assert response.status_code == 200, describe(response)
    (todos,) = response.json()["proposals"]
    views = {view["identity"]: view for view in todos["trial"]["views"]}
    assert views["user_a"]["sees"] == {"user_a": 1}
    assert views["user_b"]["sees"] == {"user_b": 1}
    assert views["anon"]["rows"] == 0
    assert todos["trial"]["cross_write_refused"] is True
    assert any("FOR SELECT TO authenticated USING ((SELECT auth.uid()) = user_id)" in s for s in todos["statements"])


def test_tenant_trial_uses_memberships(shop):
    (projects,) = proposals(shop, "public.projects").json()["proposals"]
    views = {view["identity"]: view for view in projects["trial"]["views"]}
    assert views["user_a"]["sees"] == {"user_a": 1}
    assert views["user_b"]["sees"] == {"user_b": 1}
    assert views["anon"]["rows"] == 0
    assert projects["trial"]["cross_write_refused"] is True


def test_public_read_trial(shop):
    (products,) = proposals(shop, "products").json()["proposals"]
    views = {view["identity"]: view for view in products["trial"]["views"]}
    assert views["anon"]["rows"] == views["user_a"]["rows"] == 4


class User(dbkit.SignedInUser):
    """A signed-up, signed-in user of a portal (dbkit.SignedInUser with this file's password)."""

    def __init__(self, portal, tag: str):
        super().__init__(portal, tag, PASSWORD)


def test_apply_writes_a_migration_and_two_real_users_see_only_their_rows(shop):
    response = shop.request("POST", f"{shop.base}/intelligence/v1/rls/apply", json={"table": "public.todos"})
    assert response.status_code == 201, describe(response)
    applied = response.json()
    assert applied["migration"].endswith("_rls_public_todos.sql")
    rows = shop.sql_rows(f"select checksum from meltybase_internal.migrations where name = '{applied['migration']}'")
    assert rows == [[applied["checksum"]]]
    listed = shop.request("GET", f"{shop.base}/intelligence/v1/rls/migrations").json()["migrations"]
    assert [item["name"] for item in listed] == [applied["migration"]]
    assert shop.sql_rows("select count(*) from pg_policies where tablename = 'todos'") == [[4]]
    # Applied once: the table has policies now.
    again = shop.request("POST", f"{shop.base}/intelligence/v1/rls/apply", json={"table": "public.todos"})
    assert again.status_code == 404, describe(again)

    alice, bob = User(shop, "alice"), User(shop, "bob")
    deadline = time.monotonic() + 15
    while shop.rest("GET", "todos?select=id").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    for user in (alice, bob):
        created = shop.rest("POST", "todos", key=shop.anon, token=user.token, json={"title": f"{user.email}'s"})
        assert created.status_code == 201, describe(created)
    forged = shop.rest("POST", "todos", key=shop.anon, token=alice.token, json={"title": "forged", "user_id": bob.id})
    assert forged.status_code in (401, 403), describe(forged)
    for user in (alice, bob):
        seen = shop.rest("GET", "todos?select=title,user_id", key=shop.anon, token=user.token).json()
        assert [row["user_id"] for row in seen] == [user.id]
    assert shop.rest("GET", "todos?select=id", key=shop.anon).json() == []


def test_apply_is_audited(shop, kernel):
    for database in kernel.superuser_sql("SELECT datname FROM pg_database WHERE NOT datistemplate").splitlines():
        if kernel.superuser_sql("SELECT to_regclass('meltybase.audit_log') IS NOT NULL", database) == "t":
            rows = kernel.superuser_sql(
                "SELECT details::text FROM meltybase.audit_log WHERE action = 'intelligence.rls_applied' AND target = 'public.todos'", database)
            assert "_rls_public_todos.sql" in rows and "service_role" in rows
            return
    raise AssertionError("no database holds meltybase.audit_log")


@pytest.mark.parametrize("key_name", ["anon", "none"])
def test_refused_without_service_role(shop, key_name):
    key = shop.anon if key_name == "anon" else "not-a-token"
    response = proposals(shop, key=key)
    assert response.status_code in (401, 403), describe(response)
    apply = shop.request("POST", f"{shop.base}/intelligence/v1/rls/apply", key=key, json={"table": "public.orders"})
    assert apply.status_code in (401, 403), describe(apply)


@pytest.mark.parametrize("body", [b"", b"{", b'{"table": ""}', b'{"table": 5}', '{"table": "x\\u0000y"}'.encode(), b'{"table": "' + b"a" * 500 + b'"}'])
def test_apply_refuses_bad_bodies(shop, body):
    response = shop.request("POST", f"{shop.base}/intelligence/v1/rls/apply", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, describe(response)


def test_unknown_table_is_404(shop):
    response = proposals(shop, "no_such_table; drop table orders")
    assert response.status_code == 404, describe(response)
    assert shop.count("public.orders") == 8


def test_odd_table_names_are_quoted(new_portal):
    portal = new_portal()
    portal.sql('create table "Weird ""Notes"" 日本" (id bigint generated always as identity primary key, owner_id uuid not null, "select" text not null)')
    response = proposals(portal, 'Weird "Notes" 日本')
    assert response.status_code == 200, describe(response)
    (proposal,) = response.json()["proposals"]
    assert proposal["kind"] == "owner" and proposal["trial"]["correct"], proposal
    assert proposal["statements"][0] == 'ALTER TABLE public."Weird ""Notes"" 日本" ENABLE ROW LEVEL SECURITY;'
    applied = portal.request("POST", f"{portal.base}/intelligence/v1/rls/apply", json={"table": 'public.Weird "Notes" 日本'})
    assert applied.status_code == 201, describe(applied)
    assert portal.sql_rows("""select count(*) from pg_policies where tablename = 'Weird "Notes" 日本'""") == [[4]]


def test_table_without_grants_reports_the_missing_grant(new_portal):
    portal = new_portal()
    portal.sql("create table locked (id int primary key, user_id uuid not null); revoke all on locked from anon, authenticated")
    (proposal,) = proposals(portal, "locked").json()["proposals"]
    assert proposal["trial"]["tried"] is False
    assert "GRANT SELECT is missing" in proposal["trial"]["error"]
    refused = portal.request("POST", f"{portal.base}/intelligence/v1/rls/apply", json={"table": "locked"})
    assert refused.status_code == 409 and refused.json()["code"] == "trial_failed", describe(refused)
