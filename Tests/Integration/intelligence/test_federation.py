"""The federated Knowledge Mesh: portal A publishes anonymised entries, portal B (opted in to
search) finds them with every scrubbed value gone from its results and from the hub's tables
in the system database, portal C (not opted in) sees nothing, aggregates hide small groups,
and opting out removes A's copies."""

from __future__ import annotations

import json

import requests

TIMEOUT = 60

# What must never leave portal A (in its content or metadata).
SECRETS = [
    "Maria", "Gonzalez", "maria.gonzalez@example.com", "415 555", "555-0134", "Zorblat", "Quuxley", "zq@corp.test",
    "u-99812", "7f3c9a2e-1b4d-4c8e-9f00-123456789abc", "4485112299330001", "ticket-1",
    "Dr. Okonkwo", "Okonkwo", "cus_8f3k2j9x7",
]


def call(portal, method: str, path: str, body=None, key: str | None = None):
    return requests.request(method, f"{portal.base}/vectors/v1{path}", json=body, headers=portal.headers(key), timeout=TIMEOUT)


def ok(response, status: int = 200):
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def tickets():
    entries = [{
        "id": "ticket-1",
        "vector": [1, 0, 0, 0],
        "content": "Maria Gonzalez (maria.gonzalez@example.com, +1 415 555-0134) cannot log in since the update; "
                   "card 4485112299330001, session 7f3c9a2e-1b4d-4c8e-9f00-123456789abc. Dr. Okonkwo escalated it.",
        "metadata": {"name": "Zorblat Quuxley", "email": "zq@corp.test", "user_id": "u-99812", "customer": "cus_8f3k2j9x7",
                     "topic": "login", "plan": "pro", "note": "Zorblat asked twice"},
    }]
    # Five more login tickets and two billing ones, for the aggregates (minimum group 5).
    for i in range(5):
        entries.append({"id": f"login-{i}", "vector": [0.9, 0.1 * i, 0, 0.1], "content": f"Login loop number {i}",
                        "metadata": {"topic": "login"}})
    for i in range(2):
        entries.append({"id": f"billing-{i}", "vector": [0, 0, 1, 0.1 * i], "content": "Charged twice",
                        "metadata": {"topic": "billing"}})
    return entries


def system_database(kernel) -> str:
    for name in kernel.superuser_sql("SELECT datname FROM pg_database WHERE NOT datistemplate").split():
        found = kernel.superuser_sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'intelligence_mesh'", database=name)
        if found == "1":
            return name
    raise AssertionError("no database has the intelligence_mesh schema")


def dump_hub(kernel) -> str:
    database = system_database(kernel)
    tables = kernel.superuser_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'intelligence_mesh' ORDER BY 1", database=database).split()
    assert {"members", "collections", "entries"} <= set(tables), tables
    return "\n".join(kernel.superuser_sql(f"SELECT t::text FROM intelligence_mesh.{table} t", database=database) for table in tables)


def test_a_publishes_b_finds_the_anonymised_entry_c_sees_nothing(kernel, new_portal):
    a, b, c = new_portal(), new_portal(), new_portal()
    ok(call(a, "POST", "/collections", {"name": "tickets", "dimension": 4, "metric": "cosine"}), 201)
    ok(call(a, "POST", "/collections/tickets/upsert", {"entries": tickets()}))
    ids = [entry["id"] for entry in tickets()]

    # Publishing needs the opt-in first; nothing reaches the hub before it.
    refused = call(a, "POST", "/collections/tickets/publish", {"ids": ids})
    assert refused.status_code == 403 and refused.json()["code"] == "mesh_not_opted_in", refused.text
    assert "PUT /vectors/v1/mesh" in refused.json()["hint"]
    assert a.name not in dump_hub(kernel)

    assert ok(call(a, "PUT", "/mesh", {"publish": True, "search": False}))["membership"]["publish"] is True
    published = ok(call(a, "POST", "/collections/tickets/publish", {"ids": ids + ["no-such-id"], "mesh_collection": "support"}))
    assert published == {"published": 8, "mesh_collection": "support", "missing": ["no-such-id"]}
    # Publishing again replaces the copies instead of adding more.
    ok(call(a, "POST", "/collections/tickets/publish", {"ids": ids, "mesh_collection": "support"}))

    ok(call(b, "PUT", "/mesh", {"publish": False, "search": True}))
    overview = ok(call(b, "GET", "/mesh"))
    assert {"name": "support", "dimension": 4, "metric": "cosine", "entries": 8, "publishers": 1} in overview["collections"]
    response = call(b, "POST", "/mesh/query", {"collection": "support", "vector": [1, 0, 0, 0], "k": 3})
    found = ok(response)["results"]
    assert len(found) == 3
    top = found[0]
    assert "cannot log in since the update" in top["content"], top
    for mark in ("[name]", "[email]", "[phone]", "[id]"):
        assert mark in top["content"], (mark, top["content"])
    assert top["metadata"] == {"topic": "login", "plan": "pro", "note": "[name] asked twice"}, top
    for secret in SECRETS:
        assert secret not in response.text, secret
    # Metadata filters work on the scrubbed metadata.
    billing = ok(call(b, "POST", "/mesh/query", {"collection": "support", "vector": [1, 0, 0, 0], "k": 10, "filter": {"topic": "billing"}}))
    assert [r["content"] for r in billing["results"]] == ["Charged twice", "Charged twice"]

    # Aggregates only for groups of at least 5.
    counts = ok(call(b, "GET", "/mesh/collections/support/aggregates?key=topic"))
    assert counts["groups"] == [{"value": "login", "count": 6}]
    assert counts["withheld_groups"] == 1 and counts["min_group_size"] == 5

    # The hub holds the copies, scrubbed, and the members; C is not among them.
    hub = dump_hub(kernel)
    for secret in SECRETS:
        assert secret not in hub, secret
    assert a.name in hub and b.name in hub and c.name not in hub
    assert "cannot log in since the update" in hub

    # C never opted in: no mesh search, no aggregates, no publishing.
    for method, path, body in (
        ("POST", "/mesh/query", {"collection": "support", "vector": [1, 0, 0, 0]}),
        ("GET", "/mesh/collections/support/aggregates?key=topic", None),
    ):
        denied = call(c, method, path, body)
        assert denied.status_code == 403 and denied.json()["code"] == "mesh_not_opted_in", denied.text
    assert ok(call(c, "GET", "/mesh"))["membership"] == {"publish": False, "search": False, "published_entries": 0}
    # A publishes only: it may not search.
    assert call(a, "POST", "/mesh/query", {"collection": "support", "vector": [1, 0, 0, 0]}).status_code == 403
    # Only the service role (or an AAL2 admin) manages the mesh.
    assert call(b, "POST", "/mesh/query", {"collection": "support", "vector": [1, 0, 0, 0]}, key=b.anon).status_code == 403

    # Withdrawing one entry, then opting out, removes A's copies from the hub.
    withdrawn = ok(call(a, "POST", "/collections/tickets/unpublish", {"ids": ["ticket-1"], "mesh_collection": "support"}))
    assert withdrawn["withdrawn"] == 1
    assert "cannot log in since the update" not in dump_hub(kernel)
    ok(call(a, "PUT", "/mesh", {"publish": False, "search": False}))
    assert ok(call(b, "POST", "/mesh/query", {"collection": "support", "vector": [1, 0, 0, 0]}))["results"] == []
    hub = dump_hub(kernel)
    assert a.name not in hub and "Login loop" not in hub


def test_mesh_input_is_checked(new_portal):
    portal = new_portal()
    ok(call(portal, "PUT", "/mesh", {"publish": True, "search": True}))
    ok(call(portal, "POST", "/collections", {"name": "docs", "dimension": 2, "metric": "l2"}), 201)
    ok(call(portal, "POST", "/collections/docs/upsert", {"entries": [{"id": "x", "vector": [1, 2], "content": "plain words"}]}))
    for body in ({"publish": "yes", "search": True}, {"publish": True}, [], {"publish": None, "search": None}):
        response = call(portal, "PUT", "/mesh", body)
        assert response.status_code == 400, (body, response.text)
    for body in ({"ids": []}, {"ids": ["x"], "mesh_collection": "Bad Name"}, {"ids": ["x\u0000"]}, {"ids": "x"}):
        response = call(portal, "POST", "/collections/docs/publish", body)
        assert response.status_code == 400, (body, response.text)
    assert call(portal, "POST", "/collections/nope/publish", {"ids": ["x"]}).status_code == 404
    ok(call(portal, "POST", "/collections/docs/publish", {"ids": ["x"], "mesh_collection": "plain-2d"}))
    for body in (
        {"collection": "plain-2d", "vector": [1, 2, 3]},
        {"collection": "plain-2d", "vector": [1, 2], "k": 1000},
        {"collection": "plain-2d", "vector": [1, 2], "filter": {"$bad": 1}},
        {"collection": "plain-2d"},
        {"collection": "../etc", "vector": [1, 2]},
    ):
        response = call(portal, "POST", "/mesh/query", body)
        assert response.status_code == 400, (body, response.text)
    missing = call(portal, "POST", "/mesh/query", {"collection": "no-such-mesh", "vector": [1, 2]})
    assert missing.status_code == 404, missing.text
    # Another shape cannot be published into the same mesh collection.
    ok(call(portal, "POST", "/collections", {"name": "wide", "dimension": 3}), 201)
    ok(call(portal, "POST", "/collections/wide/upsert", {"entries": [{"id": "y", "vector": [1, 2, 3]}]}))
    clash = call(portal, "POST", "/collections/wide/publish", {"ids": ["y"], "mesh_collection": "plain-2d"})
    assert clash.status_code == 409, clash.text
    hits = ok(call(portal, "POST", "/mesh/query", {"collection": "plain-2d", "vector": [1, 2]}))["results"]
    assert [(h["content"], h["distance"]) for h in hits] == [("plain words", 0.0)]
    # Dropping the collection withdraws its copies.
    ok(call(portal, "DELETE", "/collections/docs"))
    assert ok(call(portal, "POST", "/mesh/query", {"collection": "plain-2d", "vector": [1, 2]}))["results"] == []
    assert json.loads(json.dumps(ok(call(portal, "GET", "/mesh"))))["membership"]["published_entries"] == 0
