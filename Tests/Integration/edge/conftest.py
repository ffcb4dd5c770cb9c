"""Fixtures for the Edge plugin's kernel-level tests.

- `kernel` (session): one `meltybase serve` with the Database, Vault and Edge plugins on the
  embedded Postgres and Redis (Tests/Integration/database/dbkit.py starts it), Deno from
  the project's .venv.
- `new_portal()` / `portal`: fresh portals with those plugins.
- `deploy(portal, name, files, **manifest)` in edgekit: the admin API's deploy.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "database"))

import dbkit  # noqa: E402

from edgekit import DENO  # noqa: E402

MASTER_KEY = secrets.token_hex(32)

EDGE_TOML = f"""
# Usage reaches /metrics within a second (test_functions.py checks the Edge counters).
# First: tests append keys to the last table, [plugins.edge.config].
[metering]
flush_interval_seconds = 1

[plugins.vault]
path = "libVaultPlugin.so"

[plugins.vault.config]
master_key_file = "vault-master.key"

[plugins.edge]
path = "libEdgePlugin.so"

[plugins.edge.config]
deno_path = "{DENO}"
"""


def write_master_key(kernel: dbkit.Kernel) -> None:
    key = kernel.directory / "vault-master.key"
    key.write_text(MASTER_KEY + "\n")
    key.chmod(0o600)


@pytest.fixture(scope="session")
def kernel():
    started = dbkit.Kernel(extra_toml=EDGE_TOML, prepare=write_master_key)
    yield started
    failures = dbkit.stop_and_check(started)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def new_portal(kernel):
    return dbkit.portal_factory(kernel, "fn", "database,vault,edge")


@pytest.fixture(scope="module")
def portal(new_portal):
    return new_portal()
