"""The SQL console (`POST /sql/v1/query`) and `meltybase migrate`.

The console answers columns, rows and the command tag, or the SQLSTATE with message and
position; it runs as the portal's owner role, which is no superuser and cannot become
one. Migrations apply each file once, in name order, each in a transaction.
"""

from __future__ import annotations

import pytest

from dbkit import describe


def console(portal, query):
    return portal.sql_response(query)


def test_console_result_shape(portal):
    response = console(portal, "select 1 as one, 'x'::text as t, null::int as n, true as b, 1.5::numeric as d")
    assert response.status_code == 200, describe(response)
    body = response.json()
    assert [c["name"] for c in body["columns"]] == ["one", "t", "n", "b", "d"]
    assert all(c.get("type") for c in body["columns"]), body
    assert len(body["rows"]) == 1
    one, t, n, b, d = body["rows"][0]
    assert int(one) == 1 and t == "x" and n is None and b in (True, "t", "true") and float(d) == 1.5
    assert body["command"].startswith("SELECT"), body


def test_console_several_statements_answer_the_last(portal):
    body = portal.sql("create table c1 (id int primary key, v text); insert into c1 values (1, 'a'), (2, 'b');"
                      "select v from c1 order by id")
    assert body["rows"] == [["a"], ["b"]] and body["command"].startswith("SELECT")
    body = portal.sql("update c1 set v = 'z' where id = 2")
    assert body["command"] == "UPDATE 1", body
    assert portal.sql("create table c2 (id int)")["command"] == "CREATE TABLE"


@pytest.mark.parametrize("query,code,has_position", [
    ("select * from no_such_table", "42P01", True),
    ("selec 1", "42601", True),
    ("select 1/0", "22012", False),
    ("select 'abc'::int", "22P02", True),
    ("select now(1, 2, 3)", "42883", True),
], ids=["undefined-table", "syntax", "division", "bad-cast", "undefined-function"])
def test_console_errors(portal, query, code, has_position):
    response = console(portal, query)
    assert response.status_code == 400, describe(response)
    body = response.json()
    assert body.get("code") == code and body.get("message"), body
    assert {"code", "message", "position", "hint", "details"} <= set(body), body
    if has_position:
        assert body["position"] not in (None, "", 0), body
    if code == "42883":
        assert body["hint"], body


def test_console_is_the_owner_not_a_superuser(portal):
    rows = portal.sql_rows("select current_user::text, (select rolsuper from pg_roles where rolname = current_user)")
    user, superuser = rows[0]
    assert user.startswith("mb_owner_"), user
    assert superuser in (False, "f", "false"), superuser


@pytest.mark.parametrize("query", [
    "set role meltybase",
    "set session authorization meltybase",
    "set role authenticator",
    "create role intruder superuser",
    "alter role current_user superuser",
    "copy (select 1) to program 'id'",
    "select pg_read_file('/etc/passwd')",
    "alter system set work_mem = '1MB'",
    "create extension if not exists dblink",
    "drop database meltybase",
    "select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid()",
], ids=["set-role-kernel", "session-authorization", "set-role-authenticator", "create-role", "alter-role",
        "copy-program", "read-file", "alter-system", "extension", "drop-system-db", "terminate-others"])
def test_console_cannot_escalate(portal, query):
    response = console(portal, query)
    if query.startswith("select pg_terminate_backend"):
        # Allowed to run, but it may not end connections of other roles.
        assert response.status_code in (200, 400), describe(response)
        if response.status_code == 200:
            assert all(row[0] in (False, "f", "false") for row in response.json()["rows"]), describe(response)
        return
    assert response.status_code == 400, describe(response)
    assert response.json().get("code") in ("42501", "0A000", "58P01", "42704", "28000", "22023"), describe(response)


def test_console_of_one_portal_cannot_touch_another(portal, new_portal):
    other = new_portal("victim")
    other.sql("create table secret (v text); insert into secret values ('x')")
    response = console(portal, f'drop database "mb_{other.name}"')
    assert response.status_code == 400, describe(response)
    response = console(portal, f'grant connect on database "mb_{other.name}" to public')
    assert response.status_code == 400, describe(response)
    assert other.sql_rows("select v from secret") == [["x"]]


def test_console_refuses_anon(portal):
    response = console(portal.__class__(portal.kernel, portal.name, portal.anon, portal.anon), "select 1")
    assert response.status_code in (401, 403), describe(response)
    response = portal.request("POST", f"{portal.base}/sql/v1/query", key=portal.service, content=b"not json",
                              headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, describe(response)
    response = portal.request("POST", f"{portal.base}/sql/v1/query", key=portal.service, json={"sql": "select 1"})
    assert 400 <= response.status_code < 500, describe(response)


# --- migrations ------------------------------------------------------------------------


def migrate(kernel, portal, folder, *flags):
    return kernel.cli("migrate", "--portal", portal.name, str(folder), *flags, timeout=120)


def test_migrations(kernel, new_portal, tmp_path):
    portal = new_portal("mig")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_create.sql").write_text("create table m1 (id int primary key, v text);\n")
    (folder / "002_fill.sql").write_text("insert into m1 values (1, 'one'), (2, 'two');\n")
    (folder / "notes.txt").write_text("not a migration\n")

    result = migrate(kernel, portal, folder, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "001_create.sql" in result.stdout and "002_fill.sql" in result.stdout, result.stdout
    assert "notes.txt" not in result.stdout
    assert portal.sql_rows("select to_regclass('public.m1') is null") in ([[True]], [["t"]]), "dry run applied"

    result = migrate(kernel, portal, folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.index("001_create.sql") < result.stdout.index("002_fill.sql"), result.stdout
    assert portal.sql_rows("select v from m1 order by id") == [["one"], ["two"]]
    portal.wait_for_rest("m1?select=id")

    result = migrate(kernel, portal, folder)
    assert result.returncode == 0 and "nothing to apply" in result.stdout, result.stdout + result.stderr
    assert portal.count("m1") == 2

    (folder / "003_more.sql").write_text("alter table m1 add column extra int default 7;\n")
    result = migrate(kernel, portal, folder, "--status")
    assert result.returncode == 0, result.stderr
    states = {line.split()[-1]: line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert states == {"001_create.sql": "applied", "002_fill.sql": "applied", "003_more.sql": "pending"}, result.stdout

    # A failing file is rolled back as a whole and named with its SQLSTATE.
    (folder / "004_bad.sql").write_text("create table m4 (id int);\nselect 1/0;\n")
    result = migrate(kernel, portal, folder)
    assert result.returncode != 0, result.stdout
    output = result.stdout + result.stderr
    assert "004_bad.sql" in output and "22012" in output, output
    assert portal.sql_rows("select extra from m1 order by id") == [[7], [7]]
    assert portal.sql_rows("select to_regclass('public.m4') is null") in ([[True]], [["t"]])
    result = migrate(kernel, portal, folder, "--status")
    states = {line.split()[-1]: line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert states.get("003_more.sql") == "applied" and states.get("004_bad.sql") == "pending", result.stdout

    # An applied file edited afterwards is reported, never re-run.
    (folder / "004_bad.sql").unlink()
    (folder / "002_fill.sql").write_text("insert into m1 values (3, 'three');\n")
    result = migrate(kernel, portal, folder, "--status")
    assert "changed" in result.stdout and "002_fill.sql" in result.stdout, result.stdout
    migrate(kernel, portal, folder)
    assert portal.count("m1") == 2


def test_migrate_unknown_portal_fails_cleanly(kernel, tmp_path):
    (tmp_path / "001.sql").write_text("select 1;\n")
    result = kernel.cli("migrate", "--portal", "no-such-portal", str(tmp_path), timeout=120)
    assert result.returncode != 0
    assert "no-such-portal" in result.stdout + result.stderr
    assert "Fatal error" not in result.stderr


# --- psql -------------------------------------------------------------------------------


def portal_psql(kernel, name: str, sql: str, *options: str):
    """`meltybase portal psql NAME [options] -- -At -c SQL` (options before the `--`)."""
    import os
    import subprocess
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    return subprocess.run(
        [str(kernel.binary), "portal", "psql", name, "--config", str(kernel.config), "--data-dir", str(kernel.data_dir),
         *options, "--", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=60, env=environment, cwd=kernel.directory)


def test_portal_psql_as_owner_and_as_api_roles(kernel, new_portal):
    portal = new_portal("psql")
    portal.setup("create table diary (id int primary key, who text not null, body text);"
                 " alter table diary enable row level security;"
                 " create policy public_rows on diary for select to anon using (who = 'public');"
                 " grant select on diary to anon;"
                 " insert into diary values (1, 'public', 'hello'), (2, 'private', 'secret')", "diary?select=id")
    owner = portal_psql(kernel, portal.name, "select current_user, count(*) from diary")
    assert owner.returncode == 0, owner.stderr
    assert owner.stdout.strip() == f"mb_owner_{portal.name}|2"
    # anon: row-level security applies exactly as for the REST API.
    anon = portal_psql(kernel, portal.name, "select current_user, string_agg(body, ',') from diary", "--role", "anon")
    assert anon.returncode == 0, anon.stderr
    assert anon.stdout.strip() == "anon|hello"
    service = portal_psql(kernel, portal.name, "select current_user, count(*) from diary", "--role", "service_role")
    assert service.stdout.strip() == "service_role|2", service.stderr
    # anon cannot escalate back.
    escalate = portal_psql(kernel, portal.name, f"set role \"mb_owner_{portal.name}\"", "--role", "anon")
    assert escalate.returncode != 0 and "permission denied" in escalate.stderr


def test_portal_psql_print_gives_the_connection_string(kernel, portal):
    result = portal_psql(kernel, portal.name, "select 1", "--print")
    assert result.returncode == 0, result.stderr
    assert f"dbname='mb_{portal.name}'" in result.stdout and f"user='mb_owner_{portal.name}'" in result.stdout, result.stdout


def test_portal_psql_refuses_an_unknown_role_clearly(kernel, portal):
    result = portal_psql(kernel, portal.name, "select 1", "--role", "postgres")
    assert result.returncode == 64 and "--role must be owner, anon, authenticated or service_role" in result.stderr
