"""Fixtures for the Intelligence plugin's integration tests.

- `kernel` (session): one `meltybase serve` with the Database, Vault and Intelligence
  plugins on the embedded Postgres and Redis (ikit.start_kernel).
- `new_portal`: `new_portal()` makes a fresh portal with those three plugins.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "database"))

import dbkit  # noqa: E402
import ikit  # noqa: E402


@pytest.fixture(scope="session")
def kernel():
    started = ikit.start_kernel()
    yield started
    failures = ikit.stop_kernel(started)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def new_portal(kernel):
    return dbkit.portal_factory(kernel, "ai", ikit.PLUGINS)
