"""Two kernels serving one portal's vector collection: each keeps its own HNSW index in
memory, caught up from Postgres on every query. When one kernel's snapshot prunes
deletions the other has not applied yet, the other must notice and rebuild, not keep
serving entries that were deleted (docs/cluster.md, "What each kernel keeps in memory")."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clusterkit  # noqa: E402
import dbkit  # noqa: E402
import ikit  # noqa: E402

NEAR = [[1, 0.01 * n, 0, 0] for n in range(1, 6)]
FAR = [[0.01 * n, 1, 0, 0] for n in range(1, 6)]


def call(portal, method: str, path: str, body=None):
    answer = requests.request(method, f"{portal.base}/vectors/v1{path}", json=body, headers=portal.headers(), timeout=60)
    assert answer.status_code in (200, 201), (answer.status_code, answer.text)
    return answer.json()


@pytest.fixture(scope="module")
def pair():
    first = ikit.start_kernel("snapshot_delay_ms = 100\n")
    second = None
    try:
        # The second kernel snapshots late, so only the first one prunes.
        second = ikit.start_kernel("snapshot_delay_ms = 600000\n" + clusterkit.joined_toml(first))
        portal_a = first.create_portal("vec", plugins=ikit.PLUGINS)
        portal_b = dbkit.Portal(second, portal_a.name, portal_a.anon, portal_a.service)
        second._wait_for_portal(portal_b)
        yield first, portal_a, portal_b
    finally:
        failures = []
        for kernel in (second, first):
            if kernel is not None and kernel.process.poll() is None:
                failures += ikit.stop_kernel(kernel)
        assert not failures, "\n".join(failures)


def test_a_kernel_behind_another_kernels_pruned_deletions_rebuilds_instead_of_serving_deleted_entries(pair):
    first, portal_a, portal_b = pair
    call(portal_a, "POST", "/collections", {"name": "kb", "dimension": 4, "metric": "cosine"})
    entries = [{"id": f"near-{n}", "vector": v} for n, v in enumerate(NEAR)] + [{"id": f"far-{n}", "vector": v} for n, v in enumerate(FAR)]
    call(portal_a, "POST", "/collections/kb/upsert", {"entries": entries})
    # The second kernel loads its index now (all ten entries).
    before = call(portal_b, "POST", "/collections/kb/query", {"vector": [1, 0, 0, 0], "k": 5})["results"]
    assert sorted(hit["id"] for hit in before) == [f"near-{n}" for n in range(5)]

    # Deleted through the first kernel, whose snapshot then prunes those deletions.
    assert call(portal_a, "POST", "/collections/kb/delete", {"ids": [f"near-{n}" for n in range(5)]}) == {"deleted": 5}
    call(portal_a, "POST", "/collections/kb/query", {"vector": [1, 0, 0, 0], "k": 1})
    database = "mb_" + portal_a.name
    deadline = time.monotonic() + 60
    while True:
        left = first.superuser_sql("select count(*) from intelligence.vector_deletions", database=database).strip()
        if left == "0":
            break
        assert time.monotonic() < deadline, f"the first kernel's snapshot never pruned the deletions ({left} left)"
        time.sleep(0.2)

    # The second kernel's index never saw those deletions; it must still answer with live entries only.
    after = call(portal_b, "POST", "/collections/kb/query", {"vector": [1, 0, 0, 0], "k": 5})["results"]
    assert sorted(hit["id"] for hit in after) == [f"far-{n}" for n in range(5)], after


def test_snapshots_of_an_insert_only_collection_send_no_other_kernel_into_a_rebuild(pair):
    first, portal_a, portal_b = pair
    second = portal_b.kernel
    call(portal_a, "POST", "/collections", {"name": "grow", "dimension": 4, "metric": "cosine"})
    call(portal_a, "POST", "/collections/grow/upsert", {"entries": [{"id": "a", "vector": [1, 0, 0, 0]}]})
    assert [hit["id"] for hit in call(portal_b, "POST", "/collections/grow/query", {"vector": [1, 0, 0, 0], "k": 1})["results"]] == ["a"]
    snapshot = next(first.directory.rglob("grow.json"), None)
    deadline = time.monotonic() + 60
    for round in range(3):
        # The first kernel writes and snapshots; the second catches up from Postgres.
        call(portal_a, "POST", "/collections/grow/upsert", {"entries": [{"id": f"n{round}", "vector": [0, 1, round, 0]}]})
        call(portal_a, "POST", "/collections/grow/query", {"vector": [1, 0, 0, 0], "k": 1})
        before = snapshot.stat().st_mtime_ns if snapshot else 0
        while True:
            snapshot = next(first.directory.rglob("grow.json"), None)
            if snapshot is not None and snapshot.stat().st_mtime_ns != before:
                break
            assert time.monotonic() < deadline, "the first kernel never wrote its snapshot"
            time.sleep(0.1)
        found = call(portal_b, "POST", "/collections/grow/query", {"vector": [0, 1, round, 0], "k": 1})["results"]
        assert [hit["id"] for hit in found] == [f"n{round}"]
    assert "collection grow is at change" not in second.log_text(), "an insert-only collection was rebuilt on the other kernel"
