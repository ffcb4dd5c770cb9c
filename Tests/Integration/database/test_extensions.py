"""The extensions Supabase projects assume: every portal database has `uuid-ossp`,
`pgcrypto`, `pg_trgm` and `citext` in schema `extensions`, which is on the database's
search path, so migrations, the SQL console and REST (column defaults, rpc) call their
functions unqualified, as on Supabase."""
import time
import uuid

import pytest
from dbkit import describe

MIGRATION = """
create table items (id uuid primary key default uuid_generate_v4(), name citext, secret text);
insert into items (name, secret) values ('Ann', crypt('pw', gen_salt('bf')));
"""

# A plain SQL function body is resolved when it runs, with the caller's search path.
RPC = """
create function new_uuid() returns uuid language sql volatile as $$ select uuid_generate_v4() $$;
"""


@pytest.fixture(scope="module")
def migrated(kernel, portal, tmp_path_factory):
    """The module's fresh portal after `meltybase migrate` of the two files above."""
    folder = tmp_path_factory.mktemp("migrations")
    (folder / "001_items.sql").write_text(MIGRATION)
    (folder / "002_rpc.sql").write_text(RPC)
    return kernel.cli("migrate", "--portal", portal.name, str(folder))


def test_a_supabase_style_migration_applies_to_a_fresh_portal(portal, migrated):
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "applied 001_items.sql" in migrated.stdout and "applied 002_rpc.sql" in migrated.stdout, migrated.stdout

    # The SQL console resolves them unqualified too.
    assert portal.sql_rows("select crypt('pw', secret) = secret from items") == [[True]]
    assert portal.sql_rows("select count(*) from items where name = 'ANN'") == [[1]], "citext compares case-blind"
    assert portal.sql_rows("select gen_random_uuid() is not null") == [[True]]
    assert portal.sql_rows("select similarity('word', 'words') > 0") == [[True]]
    assert portal.sql_rows("show search_path") == [['"$user", public, extensions']]


def test_the_extensions_live_in_schema_extensions(portal):
    rows = portal.sql_rows("""
        select e.extname, n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace
        where e.extname in ('uuid-ossp', 'pgcrypto', 'pg_trgm', 'citext') order by e.extname""")
    assert rows == [["citext", "extensions"], ["pg_trgm", "extensions"], ["pgcrypto", "extensions"],
                    ["uuid-ossp", "extensions"]]


def test_rest_insert_gets_a_generated_uuid(portal, migrated):
    portal.wait_for_rest("items?select=id")
    response = portal.rest("POST", "items", json={"name": "Bob", "secret": "x"},
                           headers={"Prefer": "return=representation"})
    assert response.status_code == 201, describe(response)
    generated = uuid.UUID(response.json()[0]["id"])
    assert generated.version == 4


def test_rest_rpc_calls_uuid_generate_v4_unqualified(portal, migrated):
    deadline = time.monotonic() + 15
    while True:
        response = portal.rest("POST", "rpc/new_uuid", json={})
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 200, describe(response)
    assert uuid.UUID(response.json()).version == 4
    # anon reaches the schema too (USAGE), as Supabase grants it.
    anon = portal.rest("POST", "rpc/new_uuid", json={}, key=portal.anon)
    assert anon.status_code == 200, describe(anon)
    assert uuid.UUID(anon.json()).version == 4


def wait_for_status(portal, wanted, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        response = portal.rest("GET", "")
        if wanted(response.status_code) or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_a_portal_provisioned_before_the_extensions_gets_them_on_its_next_provisioning(kernel, new_portal):
    old = new_portal("extold")
    database = old.sql_rows("select current_database()")[0][0]
    # As a portal made before the extensions looked: no schema, no search path setting.
    kernel.superuser_sql(f'DROP SCHEMA extensions CASCADE; ALTER DATABASE "{database}" RESET search_path;', database)
    assert kernel.superuser_sql("SELECT count(*) FROM pg_extension WHERE extname = 'uuid-ossp'", database) == "0"

    # A new plugin instance provisions again (as a kernel restart does), on the existing database.
    for action, served in (("disable", False), ("enable", True)):
        result = kernel.cli("portal", action, old.name, "database")
        assert result.returncode == 0, result.stdout + result.stderr
        response = wait_for_status(old, (lambda code: code == 200) if served else (lambda code: code == 404))
        assert (response.status_code == 200) == served, describe(response)

    assert old.sql_rows("select uuid_generate_v4() is not null, crypt('pw', gen_salt('bf')) is not null") == [[True, True]]
    assert old.sql_rows("select count(*) from pg_extension e join pg_namespace n on n.oid = e.extnamespace "
                        "where n.nspname = 'extensions'") == [[4]]
