"""select (aliases, casts, embedding), ordering, paging, counts, single objects, writes,
upsert, rpc, schema profiles, the OpenAPI root and PostgREST's error mapping."""

from __future__ import annotations

import re
import time

import pytest
from postgrest.exceptions import APIError

from dbkit import describe, error_json

SETUP = """
create table authors (id int primary key, name text not null, born date);
create table books (
  id int primary key,
  title text not null,
  author_id int references authors(id),
  price numeric(6,2),
  published date
);
create table tags (id int primary key, label text not null unique);
create table book_tags (
  book_id int references books(id),
  tag_id int references tags(id),
  primary key (book_id, tag_id)
);
insert into authors values (1, 'Ada', '1815-12-10'), (2, 'Brian', null), (3, 'Cleo', null);
insert into books values
  (1, 'Analytical Notes', 1, 10.50, '1843-01-01'),
  (2, 'Engines', 1, null, null),
  (3, 'Unix', 2, 25.00, '1984-01-01'),
  (4, 'Awk', 2, 5.25, '1988-01-01'),
  (5, 'Orphan', null, 1.00, null);
insert into tags values (1, 'math'), (2, 'history'), (3, 'computing');
insert into book_tags values (1, 1), (1, 2), (2, 3), (3, 3), (4, 3);

create table counters (
  id int primary key,
  label text,
  hits int not null default 7,
  created timestamptz not null default now()
);
create table settings (id serial primary key, key text not null unique, value text);

create function add_them(a int, b int) returns int language sql immutable as $$ select a + b $$;
create function books_by(author int) returns setof books language sql stable
  as $$ select * from books where author_id = author order by id $$;
create function hello() returns text language sql stable as $$ select 'hi'::text $$;
create function author_of(book int) returns authors language sql stable
  as $$ select a.* from authors a join books b on b.author_id = a.id where b.id = book $$;
create function bump() returns int language sql volatile
  as $$ insert into counters (id, label) values (777, 'bumped') returning id $$;
create function total(vals int[]) returns int language sql immutable as $$ select sum(v)::int from unnest(vals) v $$;
create function greet(name text, greeting text default 'hello') returns text language sql immutable
  as $$ select greeting || ' ' || name $$;
create view cheap_books as select id, title from books where price < 10;
"""


@pytest.fixture(scope="module")
def db(portal):
    portal.setup(SETUP, "authors?select=id", "books?select=id", "tags?select=id", "book_tags?select=book_id",
                 "counters?select=id", "settings?select=id")
    # Functions are in the schema cache too.
    for _ in range(50):
        if portal.rest("POST", "rpc/hello", json={}).status_code == 200:
            break
        time.sleep(0.2)
    return portal


@pytest.fixture(scope="module")
def client(db):
    return db.client(db.anon)


def get(db, path, params=None, key=None, headers=None):
    return db.rest("GET", path, params=params, key=db.anon if key is None else key, headers=headers)


def ok_json(response, status=200):
    assert response.status_code == status, describe(response)
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith(("application/json", "application/vnd.pgrst.object+json", "application/openapi+json")), describe(response)
    return response.json()


def assert_error(response, status, codes):
    assert response.status_code == status, describe(response)
    body = error_json(response)
    assert {"code", "message", "details", "hint"} <= set(body), f"error keys: {describe(response)}"
    codes = (codes,) if isinstance(codes, str) else codes
    assert body["code"] in codes, describe(response)
    return body


# --- select --------------------------------------------------------------------------


def test_select_columns_exactly(db):
    rows = ok_json(get(db, "books", {"select": "id,title", "id": "eq.1"}))
    assert rows == [{"id": 1, "title": "Analytical Notes"}]


def test_select_star_types(db):
    rows = ok_json(get(db, "books", {"id": "eq.3"}))
    assert rows == [{"id": 3, "title": "Unix", "author_id": 2, "price": 25.00, "published": "1984-01-01"}]


def test_alias_and_cast(db, client):
    rows = ok_json(get(db, "books", {"select": "book:title,ident:id::text,price::text", "id": "eq.1"}))
    assert rows == [{"book": "Analytical Notes", "ident": "1", "price": "10.50"}]
    data = client.table("books").select("name:title, author_id::text").eq("id", 3).execute().data
    assert data == [{"name": "Unix", "author_id": "2"}]


def test_embed_many_to_one(db, client):
    rows = ok_json(get(db, "books", {"select": "title,authors(name)", "order": "id", "id": "in.(3,5)"}))
    assert rows == [{"title": "Unix", "authors": {"name": "Brian"}}, {"title": "Orphan", "authors": None}]
    data = client.table("books").select("title, writer:authors(id, name)").eq("id", 1).execute().data
    assert data == [{"title": "Analytical Notes", "writer": {"id": 1, "name": "Ada"}}]


def test_embed_one_to_many(db, client):
    rows = ok_json(get(db, "authors", {"select": "name,books(id,title)", "order": "id"}))
    assert [r["name"] for r in rows] == ["Ada", "Brian", "Cleo"]
    assert sorted(b["id"] for b in rows[0]["books"]) == [1, 2]
    assert sorted(b["title"] for b in rows[1]["books"]) == ["Awk", "Unix"]
    assert rows[2]["books"] == []
    data = client.table("authors").select("id, works:books(title)").eq("id", 2).execute().data
    assert len(data) == 1 and sorted(b["title"] for b in data[0]["works"]) == ["Awk", "Unix"]


def test_embed_many_to_many_through_junction(db, client):
    rows = ok_json(get(db, "books", {"select": "id,tags(label)", "order": "id"}))
    labels = {r["id"]: sorted(t["label"] for t in r["tags"]) for r in rows}
    assert labels == {1: ["history", "math"], 2: ["computing"], 3: ["computing"], 4: ["computing"], 5: []}
    data = client.table("tags").select("label, books(title)").eq("label", "computing").execute().data
    assert sorted(b["title"] for b in data[0]["books"]) == ["Awk", "Engines", "Unix"]


def test_embed_with_filter_on_the_embedded_resource(db):
    rows = ok_json(get(db, "authors", {"select": "name,books(title)", "books.price": "gt.6", "order": "id"}))
    assert [(r["name"], sorted(b["title"] for b in r["books"])) for r in rows] == [
        ("Ada", ["Analytical Notes"]), ("Brian", ["Unix"]), ("Cleo", [])]


def test_embed_inner_join_filters_the_parent(db):
    rows = ok_json(get(db, "books", {"select": "title,authors!inner(name)", "authors.name": "eq.Brian", "order": "id"}))
    assert rows == [{"title": "Unix", "authors": {"name": "Brian"}}, {"title": "Awk", "authors": {"name": "Brian"}}]


def test_embed_with_foreign_key_hint(db):
    rows = ok_json(get(db, "books", {"select": "title,writer:authors!books_author_id_fkey(name)", "id": "eq.4"}))
    assert rows == [{"title": "Awk", "writer": {"name": "Brian"}}]


def test_embed_nested_two_levels(db):
    rows = ok_json(get(db, "authors", {"select": "name,books(title,tags(label))", "id": "eq.1"}))
    assert len(rows) == 1
    books = {b["title"]: sorted(t["label"] for t in b["tags"]) for b in rows[0]["books"]}
    assert books == {"Analytical Notes": ["history", "math"], "Engines": ["computing"]}


def test_embedded_order_and_limit(db, client):
    data = (client.table("authors").select("name, books(title)").eq("id", 2)
            .order("title", foreign_table="books", desc=True).execute().data)
    assert [b["title"] for b in data[0]["books"]] == ["Unix", "Awk"]


# --- order, paging, counts -----------------------------------------------------------


def ids(response):
    return [row["id"] for row in ok_json(response)]


def test_order_variants(db, client):
    assert ids(get(db, "books", {"select": "id", "order": "price.desc.nullslast,id"})) == [3, 1, 4, 5, 2]
    assert ids(get(db, "books", {"select": "id", "order": "price.asc.nullsfirst"})) == [2, 5, 4, 1, 3]
    assert ids(get(db, "books", {"select": "id", "order": "price.desc"})) == [2, 3, 1, 4, 5]
    assert ids(get(db, "books", {"select": "id", "order": "price"})) == [5, 4, 1, 3, 2]
    assert ids(get(db, "books", {"select": "id", "order": "author_id.asc,id.desc"})) == [2, 1, 4, 3, 5]
    data = client.table("books").select("id").order("price", desc=True, nullsfirst=False).execute().data
    assert [r["id"] for r in data] == [3, 1, 4, 5, 2]


def test_limit_offset(db, client):
    assert ids(get(db, "books", {"select": "id", "order": "id", "limit": "2", "offset": "1"})) == [2, 3]
    assert ids(get(db, "books", {"select": "id", "order": "id", "limit": "0"})) == []
    assert ids(get(db, "books", {"select": "id", "order": "id", "offset": "4"})) == [5]
    data = client.table("books").select("id").order("id").range(1, 3).execute().data
    assert [r["id"] for r in data] == [2, 3, 4]
    data = client.table("books").select("id").order("id", desc=True).limit(2).execute().data
    assert [r["id"] for r in data] == [5, 4]


def test_range_header(db):
    response = get(db, "books", {"select": "id", "order": "id"}, headers={"Range-Unit": "items", "Range": "1-2"})
    assert response.status_code in (200, 206), describe(response)
    assert [r["id"] for r in response.json()] == [2, 3]
    assert response.headers.get("content-range") == "1-2/*", describe(response)


def test_count_exact(db, client):
    response = get(db, "books", {"select": "id"}, headers={"Prefer": "count=exact"})
    assert response.status_code == 200, describe(response)
    assert response.headers.get("content-range") == "0-4/5", describe(response)
    response = get(db, "books", {"select": "id", "author_id": "eq.2"}, headers={"Prefer": "count=exact"})
    assert response.headers.get("content-range") == "0-1/2", describe(response)
    result = client.table("books").select("id", count="exact").eq("author_id", 1).execute()
    assert result.count == 2 and len(result.data) == 2
    result = client.table("books").select("*", count="exact", head=True).execute()
    assert result.count == 5


def test_count_exact_with_range_is_partial_content(db):
    response = get(db, "books", {"select": "id", "order": "id"},
                   headers={"Prefer": "count=exact", "Range-Unit": "items", "Range": "1-2"})
    assert response.status_code == 206, describe(response)
    assert response.headers.get("content-range") == "1-2/5", describe(response)
    assert [r["id"] for r in response.json()] == [2, 3]
    response = get(db, "books", {"select": "id", "order": "id", "limit": "2", "offset": "3"},
                   headers={"Prefer": "count=exact"})
    assert response.headers.get("content-range") == "3-4/5", describe(response)


def test_count_empty_result(db):
    response = get(db, "books", {"select": "id", "id": "eq.99"}, headers={"Prefer": "count=exact"})
    assert response.status_code == 200, describe(response)
    assert response.json() == []
    assert response.headers.get("content-range") == "*/0", describe(response)


def test_range_not_satisfiable(db):
    response = get(db, "books", {"select": "id", "order": "id", "offset": "10"}, headers={"Prefer": "count=exact"})
    assert_error(response, 416, "PGRST103")


@pytest.mark.parametrize("method", ["planned", "estimated"])
def test_count_planned_and_estimated(db, method):
    response = get(db, "books", {"select": "id"}, headers={"Prefer": f"count={method}"})
    assert response.status_code in (200, 206), describe(response)
    assert re.fullmatch(r"0-4/\d+", response.headers.get("content-range", "")), describe(response)


# --- single object -------------------------------------------------------------------

OBJECT = "application/vnd.pgrst.object+json"


def test_single_object(db, client):
    response = get(db, "authors", {"select": "id,name", "id": "eq.2"}, headers={"Accept": OBJECT})
    assert ok_json(response) == {"id": 2, "name": "Brian"}
    assert client.table("authors").select("name").eq("id", 1).single().execute().data == {"name": "Ada"}


def test_single_object_zero_or_many_rows_is_406(db, client):
    assert_error(get(db, "authors", {"id": "eq.99"}, headers={"Accept": OBJECT}), 406, "PGRST116")
    assert_error(get(db, "authors", {"id": "gt.1"}, headers={"Accept": OBJECT}), 406, "PGRST116")
    with pytest.raises(APIError) as caught:
        client.table("authors").select("name").gt("id", 0).single().execute()
    assert caught.value.code == "PGRST116"
    assert client.table("authors").select("name").eq("id", 99).maybe_single().execute() is None


# --- writes --------------------------------------------------------------------------


def test_insert_representation_fills_defaults(db, client):
    data = client.table("counters").insert({"id": 1, "label": "one"}).execute().data
    assert len(data) == 1
    assert data[0]["id"] == 1 and data[0]["label"] == "one" and data[0]["hits"] == 7 and data[0]["created"]
    data = client.table("counters").insert([{"id": 2, "label": "two"}, {"id": 3, "label": "three", "hits": 1}],
                                           default_to_null=False).execute().data
    assert sorted((r["id"], r["hits"]) for r in data) == [(2, 7), (3, 1)]


def test_insert_minimal_is_201_without_body(db):
    response = db.rest("POST", "counters", key=db.anon, json={"id": 4, "label": "four"},
                       headers={"Prefer": "return=minimal"})
    assert response.status_code == 201, describe(response)
    assert response.content == b"", describe(response)
    assert db.sql_rows("select label, hits from counters where id = 4") == [["four", 7]]


def test_bulk_insert_missing_column_is_null_unless_missing_default(db):
    # Without missing=default a key absent from one object is NULL: hits is NOT NULL.
    response = db.rest("POST", "counters", key=db.anon, params={"columns": "id,label,hits"},
                       json=[{"id": 5, "label": "five", "hits": 2}, {"id": 6, "label": "six"}])
    assert_error(response, 400, "23502")
    assert db.sql_rows("select count(*) from counters where id in (5, 6)") == [[0]]
    response = db.rest("POST", "counters", key=db.anon, params={"columns": "id,label,hits"},
                       json=[{"id": 5, "label": "five", "hits": 2}, {"id": 6, "label": "six"}],
                       headers={"Prefer": "missing=default,return=representation"})
    assert response.status_code == 201, describe(response)
    assert sorted((r["id"], r["hits"]) for r in response.json()) == [(5, 2), (6, 7)]


def test_columns_parameter_ignores_other_keys(db):
    response = db.rest("POST", "counters", key=db.anon, params={"columns": "id,label"},
                       json={"id": 7, "label": "seven", "hits": 99}, headers={"Prefer": "return=representation"})
    assert response.status_code == 201, describe(response)
    assert db.sql_rows("select hits from counters where id = 7") == [[7]]


def test_insert_with_select_returns_chosen_columns(db):
    response = db.rest("POST", "counters", key=db.anon, params={"select": "id,label"}, json={"id": 8, "label": "eight"},
                       headers={"Prefer": "return=representation"})
    assert response.status_code == 201 and response.json() == [{"id": 8, "label": "eight"}], describe(response)


def test_tx_rollback_returns_but_keeps_nothing(db):
    response = db.rest("POST", "counters", key=db.anon, json={"id": 9, "label": "gone"},
                       headers={"Prefer": "tx=rollback,return=representation"})
    assert response.status_code == 201 and response.json()[0]["label"] == "gone", describe(response)
    assert db.sql_rows("select count(*) from counters where id = 9") == [[0]]


def test_upsert_on_composite_conflict_target(db):
    response = db.rest("POST", "book_tags", key=db.anon, params={"on_conflict": "book_id,tag_id"},
                       json=[{"book_id": 1, "tag_id": 1}, {"book_id": 5, "tag_id": 1}],
                       headers={"Prefer": "resolution=ignore-duplicates,return=representation"})
    assert response.status_code == 201, describe(response)
    assert response.json() == [{"book_id": 5, "tag_id": 1}], describe(response)
    assert db.sql_rows("select count(*) from book_tags") == [[6]]
    db.sql("delete from book_tags where book_id = 5")


def test_update_and_delete(db, client):
    client.table("counters").insert([{"id": 20, "label": "a"}, {"id": 21, "label": "b"}]).execute()
    data = client.table("counters").update({"label": "A", "hits": 1}).eq("id", 20).execute().data
    assert [(r["id"], r["label"], r["hits"]) for r in data] == [(20, "A", 1)]
    assert client.table("counters").update({"label": "none"}).eq("id", 999).execute().data == []
    response = db.rest("PATCH", "counters", key=db.anon, params={"id": "eq.21"}, json={"label": "B"},
                       headers={"Prefer": "return=minimal"})
    assert response.status_code == 204, describe(response)
    assert db.sql_rows("select id, label from counters where id in (20, 21) order by id") == [[20, "A"], [21, "B"]]
    data = client.table("counters").delete().eq("id", 21).execute().data
    assert [r["id"] for r in data] == [21]
    response = db.rest("DELETE", "counters", key=db.anon, params={"id": "eq.20"}, headers={"Prefer": "return=minimal"})
    assert response.status_code == 204, describe(response)
    assert db.sql_rows("select count(*) from counters where id in (20, 21)") == [[0]]


def test_update_with_count(db):
    db.sql("insert into counters (id, label) values (30, 'x'), (31, 'x'), (32, 'y')")
    response = db.rest("PATCH", "counters", key=db.anon, params={"label": "eq.x"}, json={"hits": 3},
                       headers={"Prefer": "return=minimal,count=exact"})
    assert response.status_code == 204, describe(response)
    assert response.headers.get("content-range", "").endswith("/2"), describe(response)


def test_upsert_merge_duplicates(db, client):
    client.table("counters").upsert({"id": 40, "label": "old"}).execute()
    data = client.table("counters").upsert([{"id": 40, "label": "new"}, {"id": 41, "label": "n41"}]).execute().data
    assert sorted((r["id"], r["label"]) for r in data) == [(40, "new"), (41, "n41")]
    assert db.sql_rows("select id, label from counters where id in (40, 41) order by id") == [[40, "new"], [41, "n41"]]


def test_upsert_ignore_duplicates(db, client):
    db.sql("insert into counters (id, label) values (50, 'keep')")
    data = client.table("counters").upsert([{"id": 50, "label": "ignored"}, {"id": 51, "label": "n51"}],
                                           ignore_duplicates=True).execute().data
    assert [r["id"] for r in data] == [51]
    assert db.sql_rows("select id, label from counters where id in (50, 51) order by id") == [[50, "keep"], [51, "n51"]]


def test_upsert_on_conflict(db, client):
    first = client.table("settings").insert({"key": "theme", "value": "dark"}).execute().data[0]
    data = client.table("settings").upsert({"key": "theme", "value": "light"}, on_conflict="key").execute().data
    assert [(r["id"], r["value"]) for r in data] == [(first["id"], "light")]
    client.table("settings").upsert({"key": "theme", "value": "x"}, on_conflict="key", ignore_duplicates=True).execute()
    assert db.sql_rows("select id, value from settings where key = 'theme'") == [[first["id"], "light"]]
    # Without on_conflict the primary key is the target: the unique key clashes.
    response = db.rest("POST", "settings", key=db.anon, json={"key": "theme", "value": "y"},
                       headers={"Prefer": "resolution=merge-duplicates"})
    assert_error(response, 409, "23505")


def test_upsert_on_unknown_conflict_column_is_400(db):
    response = db.rest("POST", "settings", key=db.anon, params={"on_conflict": "nope"}, json={"key": "k"},
                       headers={"Prefer": "resolution=merge-duplicates"})
    assert 400 <= response.status_code < 500, describe(response)
    error_json(response)


# --- rpc -----------------------------------------------------------------------------


def test_rpc_scalar_post_and_get(db, client):
    assert ok_json(db.rest("POST", "rpc/add_them", key=db.anon, json={"a": 2, "b": 3})) == 5
    assert ok_json(db.rest("GET", "rpc/add_them", key=db.anon, params={"a": "40", "b": "2"})) == 42
    assert client.rpc("add_them", {"a": 1, "b": 1}).execute().data == 2
    assert client.rpc("add_them", {"a": 5, "b": 6}, get=True).execute().data == 11
    assert ok_json(db.rest("POST", "rpc/hello", key=db.anon, json={})) == "hi"


def test_rpc_setof_with_filters(db, client):
    rows = ok_json(db.rest("POST", "rpc/books_by", key=db.anon, json={"author": 1}))
    assert [r["id"] for r in rows] == [1, 2]
    rows = ok_json(db.rest("GET", "rpc/books_by", key=db.anon,
                           params={"author": "2", "select": "title", "order": "id.desc"}))
    assert rows == [{"title": "Awk"}, {"title": "Unix"}]
    data = client.rpc("books_by", {"author": 2}).select("id").eq("id", 3).execute().data
    assert data == [{"id": 3}]


def test_rpc_composite_array_and_default_arguments(db, client):
    author = ok_json(db.rest("POST", "rpc/author_of", key=db.anon, json={"book": 3}))
    assert isinstance(author, dict) and author["id"] == 2 and author["name"] == "Brian", author
    assert client.rpc("total", {"vals": [1, 2, 3]}).execute().data == 6
    assert client.rpc("total", {"vals": [4, 5]}, get=True).execute().data == 9
    assert client.rpc("greet", {"name": "Ada"}).execute().data == "hello Ada"
    assert client.rpc("greet", {"name": "Ada", "greeting": "hi"}, get=True).execute().data == "hi Ada"


def test_rpc_get_is_read_only(db):
    response = db.rest("GET", "rpc/bump", key=db.anon)
    assert 400 <= response.status_code < 500, describe(response)
    assert db.sql_rows("select count(*) from counters where id = 777") == [[0]]
    assert ok_json(db.rest("POST", "rpc/bump", key=db.anon, json={})) == 777
    db.sql("delete from counters where id = 777")


def test_views_are_served(db):
    db.wait_for_rest("cheap_books?select=id")
    assert ids(get(db, "cheap_books", {"select": "id", "order": "id"})) == [4, 5]
    assert ids(get(db, "cheap_books", {"select": "id", "title": "like.A*"})) == [4]


def test_column_type_change_does_not_break_cached_statements(db):
    db.setup("create table pc (id int primary key, v int); insert into pc values (1, 10);", "pc?select=id")
    for _ in range(5):  # Prepared (and cached) on the pooled connections.
        assert ok_json(get(db, "pc", {"select": "id,v", "id": "eq.1"})) == [{"id": 1, "v": 10}]
    db.sql("alter table pc alter column v type text using v::text || '!'")
    deadline = time.monotonic() + 15
    while True:
        response = get(db, "pc", {"select": "id,v", "id": "eq.1"})
        assert response.status_code < 500, describe(response)
        if response.status_code == 200 and response.json() == [{"id": 1, "v": "10!"}]:
            break
        assert time.monotonic() < deadline, describe(response)
        time.sleep(0.2)
    for _ in range(10):  # Every pooled connection, not only the first.
        response = get(db, "pc", {"select": "id,v", "id": "eq.1"})
        assert response.status_code == 200 and response.json() == [{"id": 1, "v": "10!"}], describe(response)


def test_dropped_table_disappears(db):
    db.setup("create table short_lived (id int primary key)", "short_lived?select=id")
    db.sql("drop table short_lived")
    deadline = time.monotonic() + 15
    while get(db, "short_lived").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_error(get(db, "short_lived"), 404, ("42P01", "PGRST205"))


def test_rpc_unknown_function_or_arguments_is_404(db):
    assert_error(db.rest("POST", "rpc/no_such_fn", key=db.anon, json={}), 404, ("PGRST202", "42883"))
    assert_error(db.rest("POST", "rpc/add_them", key=db.anon, json={"x": 1}), 404, ("PGRST202", "42883"))


def test_rpc_bad_argument_value_is_400(db):
    assert_error(db.rest("POST", "rpc/add_them", key=db.anon, json={"a": "abc", "b": 1}), 400, "22P02")


# --- profiles, OpenAPI ---------------------------------------------------------------


def test_profiles(db):
    response = get(db, "authors", {"select": "id", "id": "eq.1"}, headers={"Accept-Profile": "public"})
    assert ok_json(response) == [{"id": 1}]
    assert_error(get(db, "authors", {"select": "id"}, headers={"Accept-Profile": "nope"}), 406, "PGRST106")
    response = db.rest("POST", "counters", key=db.anon, json={"id": 60}, headers={"Content-Profile": "nope"})
    assert_error(response, 406, "PGRST106")
    assert db.sql_rows("select count(*) from counters where id = 60") == [[0]]


def test_openapi_root(db):
    for key in (db.anon, db.service):
        response = db.rest("GET", "", key=key)
        spec = ok_json(response)
        assert "swagger" in spec or "openapi" in spec, describe(response)
        paths = spec.get("paths", {})
        for path in ("/authors", "/books", "/book_tags", "/rpc/add_them", "/rpc/books_by"):
            assert path in paths, f"{path} missing from OpenAPI paths {sorted(paths)}"
        definitions = spec.get("definitions") or spec.get("components", {}).get("schemas", {})
        assert {"id", "name", "born"} <= set(definitions.get("authors", {}).get("properties", {})), definitions.get("authors")


def test_schema_changes_are_picked_up_without_restart(db):
    db.sql("alter table authors add column country text; update authors set country = 'UK' where id = 1;")
    db.wait_for_rest("authors?select=country")
    assert ok_json(get(db, "authors", {"select": "name,country", "id": "eq.1"})) == [{"name": "Ada", "country": "UK"}]
    db.sql("create table late (id int primary key); insert into late values (1);")
    db.wait_for_rest("late?select=id")
    assert ok_json(get(db, "late", {"select": "id"})) == [{"id": 1}]
    db.sql("create function late_fn() returns int language sql as $$ select 7 $$;")
    for _ in range(75):
        response = db.rest("POST", "rpc/late_fn", key=db.anon, json={})
        if response.status_code == 200:
            break
        time.sleep(0.2)
    assert ok_json(response) == 7


# --- errors --------------------------------------------------------------------------


def test_unique_violation_is_409(db, client):
    body = assert_error(db.rest("POST", "authors", key=db.anon, json={"id": 1, "name": "dup"}), 409, "23505")
    assert body["message"]
    with pytest.raises(APIError) as caught:
        client.table("authors").insert({"id": 2, "name": "dup"}).execute()
    assert caught.value.code == "23505"


def test_foreign_key_violation_is_409(db):
    assert_error(db.rest("POST", "books", key=db.anon, json={"id": 9, "title": "x", "author_id": 99}), 409, "23503")


def test_not_null_violation_is_400(db):
    assert_error(db.rest("POST", "authors", key=db.anon, json={"id": 9}), 400, "23502")


def test_unknown_table_is_404(db):
    assert_error(get(db, "no_such_table"), 404, ("42P01", "PGRST205"))
    assert_error(db.rest("POST", "no_such_table", key=db.anon, json={"a": 1}), 404, ("42P01", "PGRST205"))


def test_bad_value_is_400(db):
    assert_error(get(db, "authors", {"id": "eq.abc"}), 400, "22P02")
    assert_error(db.rest("POST", "authors", key=db.anon, json={"id": "x", "name": "n"}), 400, "22P02")
    assert_error(get(db, "authors", {"born": "gt.not-a-date"}), 400, ("22007", "22008"))


@pytest.mark.parametrize("params", [
    {"select": "id,("},
    {"select": "id,books(title"},
    {"order": "id.sideways"},
    {"id": "eq.1", "limit": "many"},
], ids=["select-unclosed", "embed-unclosed", "order-bad-direction", "limit-not-a-number"])
def test_bad_syntax_is_400_pgrst100(db, params):
    response = get(db, "authors", params)
    assert response.status_code == 400, describe(response)
    assert error_json(response).get("code") == "PGRST100", describe(response)


def test_unknown_column_and_unrelated_embed(db):
    assert_error(get(db, "authors", {"select": "nope"}), 400, "42703")
    assert_error(get(db, "authors", {"select": "id,tags(label)"}), 400, "PGRST200")


def test_invalid_json_body_is_400(db):
    response = db.rest("POST", "authors", key=db.anon, content=b"{not json",
                       headers={"Content-Type": "application/json"})
    assert response.status_code == 400, describe(response)
    error_json(response)
