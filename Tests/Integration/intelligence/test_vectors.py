"""The Knowledge Mesh's HTTP API: collections, upserts, top-k queries with metadata filters
and hybrid full-text ranking, access rules, hostile input, and recovery after a restart
(snapshot reused, snapshot behind Postgres brought up to date, corrupted snapshot rebuilt)."""

from __future__ import annotations

import math
import random
import time
import uuid

import pytest
import requests

import dbkit
import ikit

TIMEOUT = 60


def url(portal, path: str) -> str:
    return f"{portal.base}/vectors/v1{path}"


def call(portal, method: str, path: str, body=None, key: str | None = None, token: str | None = None, headers=None):
    merged = portal.headers(key, token=token) if headers is None else headers
    return requests.request(method, url(portal, path), json=body, headers=merged, timeout=TIMEOUT)


def ok(response, status: int = 200):
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def refused(response, status: int, code: str | None = None):
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) >= {"code", "message", "hint"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


def unit(vector):
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def sign_in_user(portal) -> str:
    """A confirmed user's access token (created through the auth admin API)."""
    email = f"reader-{uuid.uuid4().hex[:8]}@example.test"
    password = "correct-horse-battery-staple-9"
    created = requests.post(f"{portal.auth_url}/admin/users", headers=portal.headers(),
                            json={"email": email, "password": password, "email_confirm": True}, timeout=TIMEOUT)
    assert created.status_code in (200, 201), created.text
    token = requests.post(f"{portal.auth_url}/token?grant_type=password", headers=portal.headers(portal.anon),
                          json={"email": email, "password": password}, timeout=TIMEOUT)
    assert token.status_code == 200, token.text
    return token.json()["access_token"]


DOCS = [
    ("refund", [1, 0, 0, 0], {"topic": "billing", "year": 2024, "lang": "en"}, "How to get a refund for a cancelled order"),
    ("invoice", [0.9, 0.1, 0, 0], {"topic": "billing", "year": 2021, "lang": "de"}, "Invoices are sent at the start of each month"),
    ("shipping", [0, 1, 0, 0], {"topic": "shipping", "year": 2023, "lang": "en"}, "Shipping times for international parcels"),
    ("returns", [0, 0.8, 0.2, 0], {"topic": "shipping", "year": 2022}, "Returning a parcel: print the label and drop it off"),
    ("password", [0, 0, 1, 0], {"topic": "account", "year": 2024, "lang": "fr"}, "Reset your password from the sign-in page"),
    ("delete-account", [0, 0, 0.7, 0.3], {"topic": "account", "tags": {"gdpr": True}}, "Deleting your account removes every order"),
]


def make_collection(portal, name: str, dimension: int = 4, metric: str = "cosine", read: str | None = None):
    body = {"name": name, "dimension": dimension, "metric": metric}
    if read:
        body["read"] = read
    return ok(call(portal, "POST", "/collections", body), 201)


def fill(portal, name: str):
    entries = [{"id": i, "vector": v, "metadata": m, "content": c} for i, v, m, c in DOCS]
    body = ok(call(portal, "POST", f"/collections/{name}/upsert", {"entries": entries}))
    assert body["upserted"] == len(DOCS)


def query(portal, name: str, body: dict, **kwargs):
    return ok(call(portal, "POST", f"/collections/{name}/query", body, **kwargs))


@pytest.fixture
def portal(new_portal):
    return new_portal()


def test_collection_lifecycle(portal):
    created = make_collection(portal, "kb")
    assert created == {"name": "kb", "dimension": 4, "metric": "cosine", "read": "service_role", "count": 0,
                       "created": created["created"]}
    refused(call(portal, "POST", "/collections", {"name": "kb", "dimension": 4}), 409, "collection_exists")
    fill(portal, "kb")
    listed = ok(call(portal, "GET", "/collections"))["collections"]
    assert [(c["name"], c["count"]) for c in listed] == [("kb", len(DOCS))]
    assert ok(call(portal, "GET", "/collections/kb"))["count"] == len(DOCS)
    assert ok(call(portal, "PATCH", "/collections/kb", {"read": "authenticated"}))["read"] == "authenticated"
    assert ok(call(portal, "DELETE", "/collections/kb")) == {"dropped": "kb"}
    refused(call(portal, "GET", "/collections/kb"), 404, "collection_not_found")
    refused(call(portal, "POST", "/collections/kb/query", {"vector": [1, 0, 0, 0]}), 404, "collection_not_found")
    # A recreated collection starts empty (no stale index or snapshot is reused).
    make_collection(portal, "kb", dimension=2, metric="l2")
    assert query(portal, "kb", {"vector": [0, 0], "k": 5})["results"] == []
    assert query(portal, "kb", {"vector": [0, 0], "text": "anything", "hybrid": True})["results"] == []
    ok(call(portal, "POST", "/collections/kb/upsert", {"entries": [{"id": "only", "vector": [3, 4]}]}))
    results = query(portal, "kb", {"vector": [0, 0], "k": 5})["results"]
    assert [(r["id"], r["distance"]) for r in results] == [("only", 25.0)]


def test_top_k_answers_nearest_first_with_metadata_and_content(portal):
    make_collection(portal, "kb")
    fill(portal, "kb")
    results = query(portal, "kb", {"vector": [1, 0.05, 0, 0], "k": 3})["results"]
    assert [r["id"] for r in results] == ["refund", "invoice", "returns"][:2] + [results[2]["id"]]
    assert results[0]["metadata"] == {"topic": "billing", "year": 2024, "lang": "en"}
    assert results[0]["content"].startswith("How to get a refund")
    assert results[0]["distance"] <= results[1]["distance"] <= results[2]["distance"]
    # Replacing a vector moves the entry; deleting removes it.
    ok(call(portal, "POST", "/collections/kb/upsert", {"entries": [{"id": "password", "vector": [1, 0.01, 0, 0]}]}))
    top = query(portal, "kb", {"vector": [1, 0.01, 0, 0], "k": 1})["results"][0]
    assert top["id"] == "password" and top["metadata"] == {} and top["content"] is None
    assert ok(call(portal, "POST", "/collections/kb/delete", {"ids": ["password", "refund", "never-there"]})) == {"deleted": 2}
    ids = [r["id"] for r in query(portal, "kb", {"vector": [1, 0, 0, 0], "k": 100})["results"]]
    assert sorted(ids) == sorted(["invoice", "shipping", "returns", "delete-account"])
    assert ok(call(portal, "GET", "/collections/kb"))["count"] == 4


@pytest.mark.parametrize("filter_, expected", [
    ({"topic": "billing"}, {"refund", "invoice"}),
    ({"topic": {"$in": ["account", "shipping"]}}, {"shipping", "returns", "password", "delete-account"}),
    ({"year": {"$gte": 2023}}, {"refund", "shipping", "password"}),
    ({"year": {"$lt": 2023}, "topic": "shipping"}, {"returns"}),
    ({"lang": {"$exists": False}}, {"returns", "delete-account"}),
    ({"tags.gdpr": True}, {"delete-account"}),
    ({"$or": [{"lang": "fr"}, {"lang": "de"}]}, {"invoice", "password"}),
    ({"$not": {"topic": "billing"}}, {"shipping", "returns", "password", "delete-account"}),
    ({"topic": "'; DROP TABLE intelligence.vector_entries; --"}, set()),
])
def test_metadata_filters(portal, filter_, expected):
    make_collection(portal, "kb")
    fill(portal, "kb")
    results = query(portal, "kb", {"vector": [1, 0, 0, 0], "k": 10, "filter": filter_})["results"]
    assert {r["id"] for r in results} == expected
    assert ok(call(portal, "GET", "/collections/kb"))["count"] == len(DOCS)


def test_hybrid_fuses_vector_and_full_text_ranking(portal):
    make_collection(portal, "kb")
    fill(portal, "kb")
    # The vector points at billing; the words point at the parcel return.
    plain = query(portal, "kb", {"vector": [1, 0, 0, 0], "k": 3})["results"]
    assert "returns" not in [r["id"] for r in plain]
    fused = query(portal, "kb", {"vector": [1, 0, 0, 0], "text": "returning parcel label", "k": 3, "hybrid": True})
    assert fused["hybrid"] is True
    ids = [r["id"] for r in fused["results"]]
    assert "returns" in ids, fused
    scores = [r["score"] for r in fused["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["score"] > 0 for r in fused["results"])
    # A filter applies to both sides.
    filtered = query(portal, "kb", {"vector": [1, 0, 0, 0], "text": "parcel", "k": 5, "hybrid": True, "filter": {"topic": "billing"}})
    assert {r["id"] for r in filtered["results"]} == {"refund", "invoice"}
    refused(call(portal, "POST", "/collections/kb/query", {"vector": [1, 0, 0, 0], "hybrid": True}), 400, "invalid_request")


def test_text_without_a_provider_says_to_send_vectors(portal):
    make_collection(portal, "kb")
    body = refused(call(portal, "POST", "/collections/kb/upsert", {"entries": [{"id": "a", "text": "hello"}]}), 400, "no_embedding_provider")
    assert "vector" in body["hint"]
    refused(call(portal, "POST", "/collections/kb/query", {"text": "hello"}), 400, "no_embedding_provider")


def test_access_rules(portal):
    make_collection(portal, "private")
    make_collection(portal, "members", read="authenticated")
    make_collection(portal, "public", read="anon")
    for name in ("private", "members", "public"):
        ok(call(portal, "POST", f"/collections/{name}/upsert", {"entries": [{"id": "x", "vector": [1, 0, 0, 0]}]}))
    user = sign_in_user(portal)
    q = {"vector": [1, 0, 0, 0]}
    for name, anon_status, user_status in (("private", 403, 403), ("members", 403, 200), ("public", 200, 200)):
        assert call(portal, "POST", f"/collections/{name}/query", q, key=portal.anon).status_code == anon_status, name
        assert call(portal, "POST", f"/collections/{name}/query", q, key=portal.anon, token=user).status_code == user_status, name
    assert [c["name"] for c in ok(call(portal, "GET", "/collections", key=portal.anon))["collections"]] == ["public"]
    assert [c["name"] for c in ok(call(portal, "GET", "/collections", key=portal.anon, token=user))["collections"]] == ["members", "public"]
    # Writes and management need the service role, whoever may read.
    for method, path, body in (
        ("POST", "/collections", {"name": "mine", "dimension": 2}),
        ("POST", "/collections/public/upsert", {"entries": [{"id": "y", "vector": [0, 1, 0, 0]}]}),
        ("POST", "/collections/public/delete", {"ids": ["x"]}),
        ("PATCH", "/collections/public", {"read": "anon"}),
        ("DELETE", "/collections/public", None),
        ("GET", "/mesh", None),
        ("PUT", "/mesh", {"publish": True, "search": True}),
    ):
        refused(call(portal, method, path, body, key=portal.anon), 403, "forbidden")
        refused(call(portal, method, path, body, key=portal.anon, token=user), 403, "forbidden")
    refused(call(portal, "POST", "/collections/public/query", q, headers={}), 401)
    refused(call(portal, "POST", "/collections/public/query", q, key=portal.anon, token="not.a.jwt"), 401)
    assert ok(call(portal, "GET", "/collections/public"))["count"] == 1


HOSTILE_CREATES = [
    {"name": "UPPER", "dimension": 4},
    {"name": "a" * 64, "dimension": 4},
    {"name": "x; DROP TABLE y", "dimension": 4},
    {"name": "nul\u0000name", "dimension": 4},
    {"name": "ok", "dimension": 0},
    {"name": "ok", "dimension": 4097},
    {"name": "ok", "dimension": 1e300},
    {"name": "ok", "dimension": -1},
    {"name": "ok", "dimension": 2.5},
    {"name": "ok", "dimension": "4"},
    {"name": "ok", "dimension": 4, "metric": "manhattan"},
    {"name": "ok", "dimension": 4, "read": "everyone"},
    {"name": ["ok"], "dimension": 4},
    {},
]


@pytest.mark.parametrize("body", HOSTILE_CREATES)
def test_hostile_collection_definitions_are_refused(portal, body):
    refused(call(portal, "POST", "/collections", body), 400)


def test_hostile_entries_and_queries_are_refused(portal):
    make_collection(portal, "kb")
    fill(portal, "kb")
    bad_entries = [
        [{"id": "a", "vector": [1, 0, 0]}],
        [{"id": "a", "vector": [1, 0, 0, 0, 0]}],
        [{"id": "a", "vector": [1e39, 0, 0, 0]}],
        [{"id": "a", "vector": [0, 0, 0, 0]}],
        [{"id": "a", "vector": ["1", 0, 0, 0]}],
        [{"id": "a\u0000b", "vector": [1, 0, 0, 0]}],
        [{"id": "é" * 200, "vector": [1, 0, 0, 0]}],
        [{"id": "", "vector": [1, 0, 0, 0]}],
        [{"id": 7, "vector": [1, 0, 0, 0]}],
        [{"id": "a"}],
        [{"id": "a", "vector": [1, 0, 0, 0], "metadata": {"k\u0000": 1}}],
        [{"id": "a", "vector": [1, 0, 0, 0], "metadata": {"v": "x\u0000"}}],
        [{"id": "a", "vector": [1, 0, 0, 0], "metadata": {"big": "x" * 20_000}}],
        [{"id": "a", "vector": [1, 0, 0, 0], "metadata": [1, 2]}],
        [{"id": "a", "vector": [1, 0, 0, 0], "content": "nul\u0000"}],
        [{"id": str(i), "vector": [1, 0, 0, 0]} for i in range(1001)],
        [],
        "entries",
    ]
    for entries in bad_entries:
        refused(call(portal, "POST", "/collections/kb/upsert", {"entries": entries}), 400)
    refused(call(portal, "POST", "/collections/kb/delete", {"ids": []}), 400)
    refused(call(portal, "POST", "/collections/kb/delete", {"ids": ["a\u0000"]}), 400)
    bad_queries = [
        {"vector": [1, 0, 0, 0], "k": 0},
        {"vector": [1, 0, 0, 0], "k": 101},
        {"vector": [1, 0, 0, 0], "k": 1e20},
        {"vector": [1, 0, 0, 0], "k": -9223372036854775809},
        {"vector": [1, 0, 0, 0], "k": "5"},
        {"vector": [1, 0, 0, 0], "ef": 10**9},
        {"vector": [1, 0]},
        {"vector": [1, 0, 0, 0], "filter": {"$where": "1=1"}},
        {"vector": [1, 0, 0, 0], "filter": {"x": {"$regex": ".*"}}},
        {"vector": [1, 0, 0, 0], "filter": "topic = 'billing'"},
        {"vector": [1, 0, 0, 0], "filter": {"x": {"$in": list(range(1001))}}},
        {"vector": [1, 0, 0, 0], "hybrid": "yes", "text": "x"},
        {"vector": [1, 0, 0, 0], "text": "a" * 5000, "hybrid": True},
        {},
    ]
    for body in bad_queries:
        refused(call(portal, "POST", "/collections/kb/query", body), 400)
    raw = requests.post(url(portal, "/collections/kb/query"), data=b"{not json", headers=portal.headers(), timeout=TIMEOUT)
    refused(raw, 400, "invalid_request")
    odd = query(portal, "kb", {"vector": [1, 0, 0, 0], "text": "\u202e\U0001F9E8 ' OR 1=1 -- SELECT", "hybrid": True, "k": 2})
    assert len(odd["results"]) == 2
    refused(call(portal, "GET", "/collections/UPPER"), 400, "invalid_name")
    refused(call(portal, "POST", "/collections/kb/explode", {}), 404, "not_found")
    assert ok(call(portal, "GET", "/collections/kb"))["count"] == len(DOCS)


def test_usage_is_counted_and_a_big_batch_is_searchable(portal):
    make_collection(portal, "big", dimension=16, metric="l2")
    rng = random.Random(7)
    vectors = {f"e{i}": [rng.uniform(-1, 1) for _ in range(16)] for i in range(1000)}
    entries = [{"id": k, "vector": v, "metadata": {"group": i % 10}} for i, (k, v) in enumerate(vectors.items())]
    assert ok(call(portal, "POST", "/collections/big/upsert", {"entries": entries}))["upserted"] == 1000
    probe = vectors["e123"]
    results = query(portal, "big", {"vector": probe, "k": 5, "ef": 200})["results"]
    assert results[0]["id"] == "e123" and results[0]["distance"] == pytest.approx(0, abs=1e-5)
    exact = sorted(vectors, key=lambda k: sum((a - b) ** 2 for a, b in zip(vectors[k], probe)))[:5]
    assert [r["id"] for r in results] == exact
    grouped = query(portal, "big", {"vector": probe, "k": 20, "filter": {"group": 3}})["results"]
    assert len(grouped) == 20 and all(r["metadata"]["group"] == 3 for r in grouped)


# --- Recovery ---------------------------------------------------------------------------


RestartedKernel = dbkit.RestartedKernel


def answers(portal, probes):
    out = []
    for probe in probes:
        results = query(portal, "docs", {"vector": probe, "k": 10, "ef": 400})["results"]
        out.append([(r["id"], round(r["distance"], 5), r["metadata"]) for r in results])
    return out


def wait_until_answering(portal, deadline_seconds: float = 60):
    deadline = time.monotonic() + deadline_seconds
    while True:
        response = call(portal, "GET", "/collections/docs")
        if response.status_code == 200 or time.monotonic() > deadline:
            return ok(response)
        time.sleep(0.5)


def test_restart_reuses_updates_or_rebuilds_the_snapshot():
    # No debounced snapshots: only the one written at shutdown, so the test controls them.
    first = ikit.start_kernel("snapshot_delay_ms = 600000\n")
    kernels = [first]
    try:
        made = first.create_portal("vec", plugins=ikit.PLUGINS)
        name, anon, service = made.name, made.anon, made.service
        make_collection(made, "docs", dimension=8, metric="l2")
        rng = random.Random(11)
        vectors = {f"doc-{i}": [rng.uniform(-1, 1) for _ in range(8)] for i in range(300)}
        entries = [{"id": k, "vector": v, "metadata": {"n": i}} for i, (k, v) in enumerate(vectors.items())]
        ok(call(made, "POST", "/collections/docs/upsert", {"entries": entries}))
        probes = [[rng.uniform(-1, 1) for _ in range(8)] for _ in range(5)]
        before = answers(made, probes)
        first.stop()

        snapshot_dir = first.directory / ".meltybase" / "intelligence" / "vectors" / name
        index_file, record_file = snapshot_dir / "docs.hnsw", snapshot_dir / "docs.json"
        assert index_file.exists() and record_file.exists(), list(snapshot_dir.parent.rglob("*"))

        # 1. The snapshot matches Postgres: it is used as is.
        second = RestartedKernel(first)
        kernels.append(second)
        portal = dbkit.Portal(second, name, anon, service)
        wait_until_answering(portal)
        assert answers(portal, probes) == before
        assert "loaded the snapshot of collection docs" in second.log_text()
        old_index, old_record = index_file.read_bytes(), record_file.read_bytes()
        # Changes after the snapshot: deletions and replaced vectors.
        gone = [r[0] for r in before[0][:3]]
        assert ok(call(portal, "POST", "/collections/docs/delete", {"ids": gone}))["deleted"] == 3
        moved = {k: [rng.uniform(-1, 1) for _ in range(8)] for k in [k for k in vectors if k not in gone][100:110]}
        ok(call(portal, "POST", "/collections/docs/upsert", {"entries": [{"id": k, "vector": v, "metadata": {"moved": True}} for k, v in moved.items()]}))
        changed = answers(portal, probes)
        assert not any(r[0] in gone for rs in changed for r in rs)
        second.stop()

        # 2. An older snapshot: the changes after it are applied from Postgres.
        index_file.write_bytes(old_index)
        record_file.write_bytes(old_record)
        third = RestartedKernel(second)
        kernels.append(third)
        portal = dbkit.Portal(third, name, anon, service)
        wait_until_answering(portal)
        assert answers(portal, probes) == changed
        assert "loaded the snapshot of collection docs" in third.log_text()
        third.stop()

        # 3. A corrupted snapshot is rebuilt from Postgres, not crashed on.
        data = bytearray(index_file.read_bytes())
        for offset in range(0, len(data), 97):
            data[offset] ^= 0x5A
        index_file.write_bytes(bytes(data[: len(data) // 2]))
        fourth = RestartedKernel(third)
        kernels.append(fourth)
        portal = dbkit.Portal(fourth, name, anon, service)
        wait_until_answering(portal)
        assert answers(portal, probes) == changed
        assert "rebuilding" in fourth.log_text()
        assert ok(call(portal, "GET", "/collections/docs"))["count"] == 297
    finally:
        failures = []
        for kernel in kernels[:-1]:
            kernel.stop()
        failures = ikit.stop_kernel(kernels[-1])
        assert not failures, "\n".join(failures)


# --- Embeddings from the portal's provider (the local OpenAI-compatible server) -------------


def test_text_is_embedded_by_the_provider(llm, llm_portal):
    portal = llm_portal
    make_collection(portal, "faq", dimension=64)
    texts = {
        "refund": "refund a cancelled order and get the money back",
        "parcel": "track an international parcel shipment",
        "password": "reset a forgotten password from the sign in page",
    }
    entries = [{"id": k, "text": v, "metadata": {"kind": k}} for k, v in texts.items()]
    assert ok(call(portal, "POST", "/collections/faq/upsert", {"entries": entries}))["upserted"] == 3
    embedded = [r for r in llm.requests() if r["path"].endswith("/embeddings")]
    assert embedded and embedded[-1]["body"]["input"] == list(texts.values())
    # The text became the content; a text query is embedded the same way.
    top = query(portal, "faq", {"text": "forgotten password reset", "k": 1})["results"][0]
    assert top["id"] == "password" and top["content"] == texts["password"]
    fused = query(portal, "faq", {"text": "international parcel", "k": 3, "hybrid": True})["results"]
    assert fused[0]["id"] == "parcel" and fused[0]["score"] > fused[-1]["score"]
    # The provider's 64 numbers do not fit an 8-dimensional collection.
    make_collection(portal, "small", dimension=8)
    body = refused(call(portal, "POST", "/collections/small/upsert", {"entries": [{"id": "a", "text": "hello"}]}), 400, "invalid_request")
    assert "dimension is 8" in body["message"]


def test_concurrent_writers_leave_the_index_equal_to_postgres(portal):
    from concurrent.futures import ThreadPoolExecutor

    make_collection(portal, "busy", dimension=4, metric="l2")

    def writer(worker: int):
        for round_ in range(5):
            entries = [{"id": f"w{worker}-{i}", "vector": [worker, round_, i, 1], "metadata": {"worker": worker}} for i in range(20)]
            ok(call(portal, "POST", "/collections/busy/upsert", {"entries": entries}))
            if round_:
                ok(call(portal, "POST", "/collections/busy/delete", {"ids": [f"w{worker}-{i}" for i in range(round_ * 2)]}))
            query(portal, "busy", {"vector": [worker, round_, 0, 1], "k": 5})

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(writer, range(6)))
    # Each worker keeps ids 8..19 with the last round's vectors.
    assert ok(call(portal, "GET", "/collections/busy"))["count"] == 6 * 12
    for worker in range(6):
        results = query(portal, "busy", {"vector": [worker, 4, 10, 1], "k": 100, "filter": {"worker": worker}})["results"]
        assert sorted(r["id"] for r in results) == sorted(f"w{worker}-{i}" for i in range(8, 20))
        top = results[0]
        assert top["id"] == f"w{worker}-10" and top["distance"] == 0


def test_index_memory_is_bounded_per_portal():
    """`index_memory_mb` bounds one portal's loaded indexes: an upsert that would make a
    collection alone exceed it is refused (413), and loading another collection unloads the
    least recently used one, which loads again (from its snapshot) when next asked."""
    kernel = ikit.start_kernel("index_memory_mb = 1\n")
    try:
        portal = kernel.create_portal("mem", plugins=ikit.PLUGINS)
        rng = random.Random(5)

        def batch(prefix: str, count: int):
            return {"entries": [{"id": f"{prefix}-{i}", "vector": [round(rng.uniform(-1, 1), 3) for _ in range(512)]} for i in range(count)]}

        for name in ("a", "b"):
            make_collection(portal, name, dimension=512, metric="l2")
            ok(call(portal, "POST", f"/collections/{name}/upsert", batch(name, 250)))  # about 0.54 MiB each
        body = refused(call(portal, "POST", "/collections/a/upsert", batch("more", 250)), 413, "index_memory_exceeded")
        assert "index_memory_mb" in body["hint"]
        assert ok(call(portal, "GET", "/collections/a"))["count"] == 250  # nothing of the refused batch was written
        probe = {"vector": [0.1] * 512, "k": 3}
        first_a = query(portal, "a", probe)["results"]
        query(portal, "b", probe)  # both do not fit at once: a is unloaded
        again_a = query(portal, "a", probe)["results"]
        assert [r["id"] for r in again_a] == [r["id"] for r in first_a] and len(first_a) == 3
        log = kernel.log_text()
        assert "unloading the index of collection a" in log and "unloading the index of collection b" in log, log[-3000:]
    finally:
        failures = ikit.stop_kernel(kernel)
        assert not failures, "\n".join(failures)


def test_a_broad_filter_checks_the_nearest_candidates():
    """With `broad_filter_entries = 10`, a filter admitting more entries than that filters the
    index's nearest candidates instead of loading every admitted label: the answer is still
    exactly the nearest admitted entries, and a narrow filter still guides the search."""
    kernel = ikit.start_kernel("broad_filter_entries = 10\n")
    try:
        portal = kernel.create_portal("broad", plugins=ikit.PLUGINS)
        make_collection(portal, "pts", dimension=2, metric="l2")
        entries = [{"id": f"p{i}", "vector": [i / 100, 0], "metadata": {"even": i % 2 == 0, "tag": "rare" if i in (7, 93) else "common"}} for i in range(100)]
        ok(call(portal, "POST", "/collections/pts/upsert", {"entries": entries}))
        broad = query(portal, "pts", {"vector": [0.205, 0], "k": 3, "filter": {"even": True}})["results"]
        assert [r["id"] for r in broad] == ["p20", "p22", "p18"], broad
        narrow = query(portal, "pts", {"vector": [0, 0], "k": 5, "filter": {"tag": "rare"}})["results"]
        assert [r["id"] for r in narrow] == ["p7", "p93"], narrow
    finally:
        failures = ikit.stop_kernel(kernel)
        assert not failures, "\n".join(failures)


def test_a_collection_over_the_memory_budget_is_refused_when_a_query_loads_it():
    """Queries look a collection up without counting it; the loaded index itself is judged:
    after `index_memory_mb` was lowered below a collection's size, a query answers 409
    `index_memory_exceeded` (and the kernel keeps serving) instead of holding the index."""
    kernel = ikit.start_kernel("index_memory_mb = 2\n")
    kernels = [kernel]
    try:
        portal = kernel.create_portal("over", plugins=ikit.PLUGINS)
        rng = random.Random(9)
        make_collection(portal, "big", dimension=512, metric="l2", read="anon")
        for part in range(2):
            entries = [{"id": f"e{part}-{i}", "vector": [round(rng.uniform(-1, 1), 3) for _ in range(512)]} for i in range(300)]
            ok(call(portal, "POST", "/collections/big/upsert", {"entries": entries}))  # about 1.3 MiB in all
        name, anon, service = portal.name, portal.anon, portal.service
        kernel.stop()
        kernel.config.write_text(kernel.config.read_text().replace("index_memory_mb = 2", "index_memory_mb = 1"))
        again = RestartedKernel(kernel)
        kernels.append(again)
        restarted = dbkit.Portal(again, name, anon, service)
        again.portals.append(restarted)
        again._wait_for_portal(restarted)
        body = refused(call(restarted, "POST", "/collections/big/query", {"vector": [0.0] * 512, "k": 3}, key=anon), 409, "index_memory_exceeded")
        assert "index_memory_mb" in body["hint"] and "600 entries" in body["message"], body
        assert ok(call(restarted, "GET", "/collections"))["collections"][0]["count"] == 600
    finally:
        for started in reversed(kernels):
            started.stop()
        kernel.cleanup()
