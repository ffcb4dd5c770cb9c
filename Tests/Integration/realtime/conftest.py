"""Fixtures for the Realtime plugin's integration tests.

- `kernel` (session): one `meltybase serve` with the Database and Realtime plugins on the
  embedded Postgres and Redis (Tests/Integration/database/dbkit.py starts it).
- `portal` (module): a fresh portal with both plugins.
- `rt` helpers in rtkit.py: the real PyPI `realtime` client (the one supabase-py uses) and
  a hand-written vsn=2.0.0 client on `websockets`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "database"))

import dbkit  # noqa: E402

from rtkit import start_kernel, stop_kernel  # noqa: E402


@pytest.fixture(scope="session")
def kernel():
    started = start_kernel()
    yield started
    failures = stop_kernel(started)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def new_portal(kernel):
    return dbkit.portal_factory(kernel, "rt", "database,realtime")


@pytest.fixture(scope="module")
def portal(new_portal):
    return new_portal()
