"""Every PostgREST filter operator of compat.md, through postgrest-py and raw HTTP.

The data are chosen so that a wrong translation gives other rows: NULLs (neq, is,
isdistinct and negations), case (like vs ilike, match vs imatch), an empty array and an
empty range (cd), ranges that overlap without containing (sl/sr/nxl/nxr/adj), stemming
and phrases (fts vs plfts vs phfts vs wfts), a value with a comma (in, or).

Each raw case carries the equivalent SQL `where`; test_expectations_match_sql checks the
hard-coded ids against Postgres itself through the SQL console, so a wrong expectation
in this file cannot pass for a plugin bug (nor the other way round).
"""

from __future__ import annotations

import pytest

from dbkit import describe, error_json

SETUP = """
create table ops (
  id int primary key,
  n int,
  name text,
  flag boolean,
  tags text[],
  nums int[],
  r int4range,
  meta jsonb,
  body text,
  tsv tsvector generated always as (to_tsvector('english', coalesce(body, ''))) stored
);
insert into ops (id, n, name, flag, tags, nums, r, meta, body) values
  (1, 1,    'Alpha', true,  '{a,b}',   '{1,2}', '[1,5)',   '{"k": 1, "t": ["x"]}',   'the fat rat'),
  (2, 2,    'beta',  false, '{b,c}',   '{2,3}', '[5,10)',  '{"k": 2}',               'the rat is fat'),
  (3, 3,    'Gamma', null,  '{c}',     '{3}',   '[10,20)', '{"k": 1, "z": true}',    'a cat sat'),
  (4, null, 'delta', true,  '{}',      '{}',    '[3,7)',   '{}',                     'fat cats and rats'),
  (5, 5,    'a,b',   false, '{"a,b"}', '{5}',   'empty',   '{"k": 3}',               null),
  (6, 6,    null,    null,  null,      null,    null,      null,                     'zebra');
"""

ALL = [1, 2, 3, 4, 5, 6]

# (test id, query parameters, expected ids, equivalent SQL condition)
CASES = [
    ("eq", [("n", "eq.2")], [2], "n = 2"),
    ("eq-text", [("name", "eq.Alpha")], [1], "name = 'Alpha'"),
    ("neq-skips-null", [("n", "neq.2")], [1, 3, 5, 6], "n <> 2"),
    ("gt", [("n", "gt.3")], [5, 6], "n > 3"),
    ("gte", [("n", "gte.3")], [3, 5, 6], "n >= 3"),
    ("lt", [("n", "lt.3")], [1, 2], "n < 3"),
    ("lte", [("n", "lte.3")], [1, 2, 3], "n <= 3"),
    ("two-filters-same-column", [("n", "gt.1"), ("n", "lt.5")], [2, 3], "n > 1 and n < 5"),
    ("like-star", [("name", "like.*a")], [1, 2, 3, 4], "name like '%a'"),
    ("like-case-sensitive", [("name", "like.A*")], [1], "name like 'A%'"),
    ("like-percent", [("name", "like.%et%")], [2], "name like '%et%'"),
    ("ilike", [("name", "ilike.a*")], [1, 5], "name ilike 'a%'"),
    ("match", [("name", "match.^[A-Z]")], [1, 3], "name ~ '^[A-Z]'"),
    ("imatch", [("name", "imatch.^[a-c]")], [1, 2, 5], "name ~* '^[a-c]'"),
    ("in", [("n", "in.(1,3,99)")], [1, 3], "n in (1, 3, 99)"),
    ("in-quoted-comma", [("name", 'in.("a,b",beta)')], [2, 5], "name in ('a,b', 'beta')"),
    ("is-null", [("n", "is.null")], [4], "n is null"),
    ("is-true", [("flag", "is.true")], [1, 4], "flag is true"),
    ("is-false", [("flag", "is.false")], [2, 5], "flag is false"),
    ("is-unknown", [("flag", "is.unknown")], [3, 6], "flag is unknown"),
    ("not-is-null", [("n", "not.is.null")], [1, 2, 3, 5, 6], "n is not null"),
    ("isdistinct-keeps-null", [("n", "isdistinct.2")], [1, 3, 4, 5, 6], "n is distinct from 2"),
    ("fts-and", [("tsv", "fts.fat & rat")], [1, 2, 4], "tsv @@ to_tsquery('fat & rat')"),
    ("fts-or", [("tsv", "fts.fat | cat")], [1, 2, 3, 4], "tsv @@ to_tsquery('fat | cat')"),
    ("fts-language-english-stems", [("tsv", "fts(english).cats")], [3, 4], "tsv @@ to_tsquery('english', 'cats')"),
    ("fts-language-simple-does-not-stem", [("tsv", "fts(simple).cats")], [], "tsv @@ to_tsquery('simple', 'cats')"),
    ("plfts-is-plain", [("tsv", "plfts.fat | cat")], [4], "tsv @@ plainto_tsquery('fat | cat')"),
    ("phfts-is-a-phrase", [("tsv", "phfts.fat rat")], [1], "tsv @@ phraseto_tsquery('fat rat')"),
    ("plfts-same-words-any-order", [("tsv", "plfts.fat rat")], [1, 2, 4], "tsv @@ plainto_tsquery('fat rat')"),
    ("wfts-minus", [("tsv", "wfts.rat -cat")], [1, 2], "tsv @@ websearch_to_tsquery('rat -cat')"),
    ("wfts-quoted-or", [("tsv", 'wfts."fat rat" or cat')], [1, 3, 4], "tsv @@ websearch_to_tsquery('\"fat rat\" or cat')"),
    ("cs-array", [("tags", "cs.{b}")], [1, 2], "tags @> '{b}'"),
    ("cs-array-two", [("tags", "cs.{a,b}")], [1], "tags @> '{a,b}'"),
    ("cs-array-quoted-comma", [("tags", 'cs.{"a,b"}')], [5], "tags @> '{\"a,b\"}'"),
    ("cs-int-array", [("nums", "cs.{2}")], [1, 2], "nums @> '{2}'"),
    ("cs-jsonb", [("meta", 'cs.{"k":1}')], [1, 3], "meta @> '{\"k\":1}'"),
    ("cs-range", [("r", "cs.[4,5)")], [1, 4], "r @> '[4,5)'::int4range"),
    ("cd-array-includes-empty", [("tags", "cd.{b,c}")], [2, 3, 4], "tags <@ '{b,c}'"),
    ("cd-jsonb", [("meta", 'cd.{"k":1,"t":["x"],"z":true}')], [1, 3, 4], "meta <@ '{\"k\":1,\"t\":[\"x\"],\"z\":true}'"),
    ("cd-range-includes-empty", [("r", "cd.[0,8)")], [1, 4, 5], "r <@ '[0,8)'::int4range"),
    ("ov-array", [("tags", "ov.{a,c}")], [1, 2, 3], "tags && '{a,c}'"),
    ("ov-int-array", [("nums", "ov.{3,5}")], [2, 3, 5], "nums && '{3,5}'"),
    ("ov-range", [("r", "ov.[4,6)")], [1, 2, 4], "r && '[4,6)'::int4range"),
    ("sl", [("r", "sl.[5,10)")], [1], "r << '[5,10)'::int4range"),
    ("sr", [("r", "sr.[5,10)")], [3], "r >> '[5,10)'::int4range"),
    ("nxr", [("r", "nxr.[5,10)")], [1, 2, 4], "r &< '[5,10)'::int4range"),
    ("nxl", [("r", "nxl.[5,10)")], [2, 3], "r &> '[5,10)'::int4range"),
    ("adj", [("r", "adj.[5,10)")], [1, 3], "r -|- '[5,10)'::int4range"),
    ("not-eq", [("n", "not.eq.2")], [1, 3, 5, 6], "not (n = 2)"),
    ("not-like", [("name", "not.like.*a")], [5], "not (name like '%a')"),
    ("not-in", [("n", "not.in.(1,2)")], [3, 5, 6], "not (n in (1, 2))"),
    ("not-cs", [("tags", "not.cs.{b}")], [3, 4, 5], "not (tags @> '{b}')"),
    ("not-fts", [("tsv", "not.fts.rat")], [3, 5, 6], "not (tsv @@ to_tsquery('rat'))"),
    ("or-nested-and", [("or", "(n.eq.1,and(n.gt.2,n.lt.6))")], [1, 3, 5], "n = 1 or (n > 2 and n < 6)"),
    ("or-mixed-columns", [("or", "(id.eq.1,and(flag.is.false,n.gt.2))")], [1, 5], "id = 1 or (flag is false and n > 2)"),
    ("or-with-in-and-not", [("or", "(n.in.(1,2),name.not.like.*a)")], [1, 2, 5], "n in (1,2) or not (name like '%a')"),
    ("or-quoted-comma", [("or", '(name.eq."a,b",id.eq.6)')], [5, 6], "name = 'a,b' or id = 6"),
    ("or-operators-inside", [("or", "(tags.ov.{a,x},r.adj.\"[5,10)\",tsv.fts.zebra)")], [1, 3, 6],
     "tags && '{a,x}' or r -|- '[5,10)'::int4range or tsv @@ to_tsquery('zebra')"),
    ("and", [("and", "(n.gte.2,n.lte.5)")], [2, 3, 5], "n >= 2 and n <= 5"),
    ("and-nested-or", [("and", "(id.lt.5,or(flag.is.null,n.eq.1))")], [1, 3], "id < 5 and (flag is null or n = 1)"),
    ("not-or", [("not.or", "(n.eq.1,n.eq.2)")], [3, 5, 6], "not (n = 1 or n = 2)"),
    ("not-and", [("not.and", "(n.gte.2,n.lte.5)")], [1, 6], "not (n >= 2 and n <= 5)"),
    ("or-and-top-level-filter", [("n", "gt.1"), ("or", "(id.eq.2,id.eq.3,id.eq.4)")], [2, 3], "n > 1 and (id in (2,3,4))"),
    ("eq-any", [("n", "eq(any).{1,3}")], [1, 3], "n = any('{1,3}')"),
    ("gt-all", [("n", "gt(all).{1,2}")], [3, 5, 6], "n > all('{1,2}')"),
    ("lt-any", [("n", "lt(any).{2,4}")], [1, 2, 3], "n < any('{2,4}')"),
    ("like-any", [("name", "like(any).{A*,*ta}")], [1, 2, 4], "name like any('{A%,%ta}')"),
    ("ilike-all", [("name", "ilike(all).{*a*,*l*}")], [1, 4], "name ilike all('{%a%,%l%}')"),
    ("match-any", [("name", "match(any).{^A,^b}")], [1, 2], "name ~ any('{^A,^b}')"),
    ("not-eq-any", [("n", "not.eq(any).{1,3}")], [2, 5, 6], "not (n = any('{1,3}'))"),
]


@pytest.fixture(scope="module")
def ops(portal):
    portal.setup(SETUP, "ops?select=id")
    return portal


def ids_of(rows) -> list[int]:
    return sorted(row["id"] for row in rows)


def test_expectations_match_sql(ops):
    """The hard-coded expectations are what Postgres itself says (guards this file)."""
    wrong = []
    for name, _params, expected, condition in CASES:
        rows = ops.sql_rows(f"select id from ops where {condition} order by id")
        got = sorted(int(row[0]) for row in rows)
        if got != expected:
            wrong.append(f"{name}: SQL `{condition}` gives {got}, the case expects {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("params,expected", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_filter_raw(ops, params, expected):
    response = ops.rest("GET", "ops", params=[("select", "id"), *params], key=ops.anon)
    assert response.status_code == 200, describe(response)
    assert ids_of(response.json()) == expected, describe(response)


SERVICE_CASES = ("neq-skips-null", "like-star", "in-quoted-comma", "isdistinct-keeps-null", "cd-range-includes-empty",
                 "or-nested-and", "not-and", "gt-all")


@pytest.mark.parametrize("params,expected", [(c[1], c[2]) for c in CASES if c[0] in SERVICE_CASES],
                         ids=[c[0] for c in CASES if c[0] in SERVICE_CASES])
def test_filter_as_service_role(ops, params, expected):
    """The same filters as the service role (another role, same translation)."""
    response = ops.rest("GET", "ops", params=[("select", "id"), *params])
    assert response.status_code == 200, describe(response)
    assert ids_of(response.json()) == expected, describe(response)


# --- through postgrest-py (supabase.create_client(...).table(...)) -------------------


@pytest.fixture(scope="module")
def table(ops):
    client = ops.client(ops.anon)
    return lambda: client.table("ops").select("id")


def run(builder) -> list[int]:
    return ids_of(builder.execute().data)


def test_client_comparisons(table):
    assert run(table().eq("n", 2)) == [2]
    assert run(table().eq("name", "Alpha")) == [1]
    assert run(table().neq("n", 2)) == [1, 3, 5, 6]
    assert run(table().gt("n", 3)) == [5, 6]
    assert run(table().gte("n", 3)) == [3, 5, 6]
    assert run(table().lt("n", 3)) == [1, 2]
    assert run(table().lte("n", 3)) == [1, 2, 3]
    assert run(table().gt("n", 1).lt("n", 5)) == [2, 3]
    assert run(table().match({"n": 2, "name": "beta"})) == [2]
    assert run(table().match({"n": 2, "name": "Alpha"})) == []


def test_client_patterns(table):
    assert run(table().like("name", "*a")) == [1, 2, 3, 4]
    assert run(table().like("name", "%et%")) == [2]
    assert run(table().ilike("name", "a*")) == [1, 5]
    assert run(table().filter("name", "match", "^[A-Z]")) == [1, 3]
    assert run(table().filter("name", "imatch", "^[a-c]")) == [1, 2, 5]
    assert run(table().like_any_of("name", "A*,*ta")) == [1, 2, 4]
    assert run(table().ilike_all_of("name", "*a*,*l*")) == [1, 4]


def test_client_in_is_isdistinct(table):
    assert run(table().in_("n", [1, 3, 99])) == [1, 3]
    assert run(table().in_("name", ["a,b", "beta"])) == [2, 5]
    assert run(table().is_("n", None)) == [4]
    assert run(table().is_("flag", True)) == [1, 4]
    assert run(table().is_("flag", False)) == [2, 5]
    assert run(table().not_.is_("n", None)) == [1, 2, 3, 5, 6]
    assert run(table().filter("n", "isdistinct", "2")) == [1, 3, 4, 5, 6]


def test_client_full_text(table):
    assert run(table().fts("tsv", "fat & rat")) == [1, 2, 4]
    assert run(table().fts("tsv", "fat | cat")) == [1, 2, 3, 4]
    assert run(table().plfts("tsv", "fat | cat")) == [4]
    assert run(table().phfts("tsv", "fat rat")) == [1]
    assert run(table().wfts("tsv", "rat -cat")) == [1, 2]
    assert run(table().text_search("tsv", "fat rat", {"type": "phrase"})) == [1]
    assert run(table().text_search("tsv", "cats", {"config": "english"})) == [3, 4]
    assert run(table().text_search("tsv", "rat -cat", {"type": "web_search"})) == [1, 2]


def test_client_containment(table):
    assert run(table().contains("tags", ["b"])) == [1, 2]
    assert run(table().contains("tags", ["a,b"])) == [5]
    assert run(table().contains("nums", [2])) == [1, 2]
    assert run(table().contains("meta", {"k": 1})) == [1, 3]
    assert run(table().contains("r", "[4,5)")) == [1, 4]
    assert run(table().contained_by("tags", ["b", "c"])) == [2, 3, 4]
    assert run(table().contained_by("meta", {"k": 1, "t": ["x"], "z": True})) == [1, 3, 4]
    assert run(table().contained_by("r", "[0,8)")) == [1, 4, 5]
    assert run(table().ov("tags", ["a", "c"])) == [1, 2, 3]
    assert run(table().overlaps("nums", [3, 5])) == [2, 3, 5]
    assert run(table().ov("r", "[4,6)")) == [1, 2, 4]


def test_client_ranges(table):
    # postgrest-py writes (a,b): (4,10) is the int4range [5,10).
    assert run(table().range_lt("r", (4, 10))) == [1]
    assert run(table().sl("r", (4, 10))) == [1]
    assert run(table().range_gt("r", (4, 10))) == [3]
    assert run(table().range_lte("r", (4, 10))) == [1, 2, 4]
    assert run(table().range_gte("r", (4, 10))) == [2, 3]
    assert run(table().range_adjacent("r", (4, 10))) == [1, 3]


def test_client_negation_and_trees(table):
    assert run(table().not_.eq("n", 2)) == [1, 3, 5, 6]
    assert run(table().not_.in_("n", [1, 2])) == [3, 5, 6]
    assert run(table().not_.like("name", "*a")) == [5]
    assert run(table().or_("n.eq.1,and(n.gt.2,n.lt.6)")) == [1, 3, 5]
    assert run(table().or_("id.eq.1,and(flag.is.false,n.gt.2)")) == [1, 5]
    assert run(table().not_.or_("n.eq.1,n.eq.2")) == [3, 5, 6]
    assert run(table().gt("n", 1).or_("id.eq.2,id.eq.3,id.eq.4")) == [2, 3]
    assert run(table().filter("n", "eq(any)", "{1,3}")) == [1, 3]
    assert run(table().filter("n", "gt(all)", "{1,2}")) == [3, 5, 6]


# --- filters on writes and bad operators ----------------------------------------------


def test_filters_scope_update_and_delete(ops):
    ops.sql("create table ops_w as select id, n, tags from ops; alter table ops_w add primary key (id);")
    ops.wait_for_rest("ops_w?select=id")
    response = ops.rest("PATCH", "ops_w", params={"or": "(n.eq.1,tags.cs.{c})", "select": "id"},
                        json={"n": 100}, headers={"Prefer": "return=representation"})
    assert response.status_code == 200, describe(response)
    assert ids_of(response.json()) == [1, 2, 3]
    assert ops.sql_rows("select id from ops_w where n = 100 order by id") == [[1], [2], [3]]
    response = ops.rest("DELETE", "ops_w", params={"n": "isdistinct.100"})
    assert response.status_code in (200, 204), describe(response)
    assert ops.sql_rows("select id from ops_w order by id") == [[1], [2], [3]]


@pytest.mark.parametrize("params", [
    [("n", "nope.1")],
    [("n", "eq")],
    [("or", "(n.eq.1")],
    [("or", "n.eq.1")],
    [("and", "(n.eq.1,or(n.gt.2)")],
    [("n", "eq(some).{1}")],
    [("n", "fts(bad config name!).x")],
], ids=["unknown-operator", "no-value", "unclosed-or", "or-without-parens", "unclosed-nested", "bad-modifier",
        "bad-fts-config"])
def test_malformed_filters_are_400(ops, params):
    response = ops.rest("GET", "ops", params=[("select", "id"), *params], key=ops.anon)
    assert 400 <= response.status_code < 500, describe(response)
    body = error_json(response)
    assert {"code", "message"} <= set(body), describe(response)


def test_unknown_column_in_filter_is_400(ops):
    response = ops.rest("GET", "ops", params={"select": "id", "nope": "eq.1"}, key=ops.anon)
    assert response.status_code == 400, describe(response)
    assert error_json(response).get("code") == "42703", describe(response)


# --- JSON paths (docs/database.md: `data->a->>b` in filters, select and order) ----------


def test_json_path_in_filter_select_and_order(ops):
    response = ops.rest("GET", "ops", key=ops.anon, params={"select": "id", "meta->>k": "eq.1"})
    assert response.status_code == 200 and ids_of(response.json()) == [1, 3], describe(response)
    response = ops.rest("GET", "ops", key=ops.anon, params={"select": "id", "meta->t->>0": "eq.x"})
    assert response.status_code == 200 and ids_of(response.json()) == [1], describe(response)
    response = ops.rest("GET", "ops", key=ops.anon, params={"select": "id,meta->>k,kj:meta->k", "id": "in.(1,4)", "order": "id"})
    assert response.status_code == 200, describe(response)
    assert response.json() == [{"id": 1, "k": "1", "kj": 1}, {"id": 4, "k": None, "kj": None}], describe(response)
    response = ops.rest("GET", "ops", key=ops.anon, params={"select": "id", "order": "meta->>k.desc.nullslast,id"})
    assert response.status_code == 200 and [r["id"] for r in response.json()] == [5, 2, 1, 3, 4, 6], describe(response)
