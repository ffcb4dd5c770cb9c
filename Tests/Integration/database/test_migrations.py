"""`meltybase migrate`: ordered SQL files applied once each, in a transaction, recorded;
`--status` and `--dry-run`; a failing file is rolled back and named."""
from pathlib import Path

from dbkit import describe


def write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql)


def test_migrations_apply_once_in_order_with_status_and_dry_run(kernel, new_portal, tmp_path):
    portal = new_portal("mig")
    folder = tmp_path / "migrations"
    folder.mkdir()
    write(folder, "002_rows.sql", "insert into items (name) values ('second file ran after the first');")
    write(folder, "001_table.sql", "create table items (id serial primary key, name text not null);")

    dry = kernel.cli("migrate", "--portal", portal.name, str(folder), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.split() == ["would", "apply", "001_table.sql", "would", "apply", "002_rows.sql"], dry.stdout
    assert portal.sql_rows("select count(*) from pg_tables where tablename = 'items'") == [[0]], "dry run applied nothing"

    applied = kernel.cli("migrate", "--portal", portal.name, str(folder))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "applied 001_table.sql" in applied.stdout and "applied 002_rows.sql" in applied.stdout
    assert portal.sql_rows("select name from items") == [["second file ran after the first"]]

    again = kernel.cli("migrate", "--portal", portal.name, str(folder))
    assert again.returncode == 0 and "nothing to apply" in again.stdout, again.stdout
    assert portal.sql_rows("select count(*) from items") == [[1]], "a second run applies nothing twice"

    write(folder, "001_table.sql", "create table items (id serial primary key);  -- edited after it ran")
    write(folder, "003_more.sql", "alter table items add column extra int;")
    status = kernel.cli("migrate", "--portal", portal.name, str(folder), "--status")
    assert status.returncode == 0, status.stderr
    states = dict(reversed(line.split()) for line in status.stdout.strip().splitlines())
    assert states == {"001_table.sql": "changed", "002_rows.sql": "applied", "003_more.sql": "pending"}, status.stdout

    # The new table is in the REST schema cache without a restart.
    response = portal.wait_for_rest("items?select=name")
    assert response.status_code == 200, describe(response)


def test_a_failing_migration_is_rolled_back_and_named(kernel, new_portal, tmp_path):
    portal = new_portal("migfail")
    folder = tmp_path / "migrations"
    folder.mkdir()
    write(folder, "001_ok.sql", "create table a (id int);")
    write(folder, "002_bad.sql", "create table b (id int);\ninsert into b values (1);\nselec broken;")
    result = kernel.cli("migrate", "--portal", portal.name, str(folder))
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "002_bad.sql" in message and "42601" in message and "rolled back" in message, message
    assert portal.sql_rows("select count(*) from pg_tables where tablename = 'b'") == [[0]], "002 left nothing behind"
    assert portal.sql_rows("select count(*) from pg_tables where tablename = 'a'") == [[1]], "001 stays applied"
    status = kernel.cli("migrate", "--portal", portal.name, str(folder), "--status")
    assert "pending  002_bad.sql" in status.stdout, status.stdout


def test_migrate_names_a_missing_portal_and_folder(kernel, new_portal, tmp_path):
    result = kernel.cli("migrate", "--portal", "no-such-portal", str(tmp_path))
    assert result.returncode != 0 and "no-such-portal" in (result.stdout + result.stderr)
    portal = new_portal("migdir")
    result = kernel.cli("migrate", "--portal", portal.name, str(tmp_path / "missing"))
    assert result.returncode != 0 and "not a folder" in (result.stdout + result.stderr)
