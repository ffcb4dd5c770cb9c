"""Fixtures for the Database plugin's integration tests (see dbkit.py).

- `kernel` (session): one `meltybase serve` with the Database plugin, embedded
  Postgres and Redis in a fresh temporary data directory, its log in
  <tmp>/kernel.log (the path is printed when a test fails; KEEP_TMP=1 keeps it).
- `new_portal` (session): factory, `new_portal()` creates a fresh portal with a
  unique name and returns a `dbkit.Portal` (base URL, anon and service_role keys).
- `portal` (module): one fresh portal per test module.
- `sql` (module): `sql(query)` runs SQL through the module portal's console.
- `kernel_factory` (function): kernels of their own, for tests that break one
  (test_outage.py); `kernel_factory(extra_toml)` appends to the config file.
- `module_kernel_factory` (module): the same, shared by a module (test_config.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dbkit  # noqa: E402


def pytest_configure(config):
    # supabase-py passes these to its own PostgREST client; nothing for the tests to change.
    config.addinivalue_line("filterwarnings", "ignore:The 'timeout' parameter is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:The 'verify' parameter is deprecated:DeprecationWarning")


def _start_kernel(extra_toml: str = "") -> dbkit.Kernel:
    try:
        return dbkit.Kernel(extra_toml)
    except dbkit.SetupError as error:
        pytest.fail(f"cannot start the kernel with the Database plugin: {error}", pytrace=False)


def _stop_kernel(kernel: dbkit.Kernel) -> list[str]:
    return dbkit.stop_and_check(kernel)


@pytest.fixture(scope="session")
def kernel():
    started = _start_kernel()
    yield started
    failures = _stop_kernel(started)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def new_portal(kernel):
    return dbkit.portal_factory(kernel, "db", "database")


@pytest.fixture(scope="module")
def portal(new_portal):
    return new_portal()


@pytest.fixture(scope="module")
def sql(portal):
    return portal.sql


@pytest.fixture
def kernel_factory():
    started: list[dbkit.Kernel] = []

    def start(extra_toml: str = "") -> dbkit.Kernel:
        one = _start_kernel(extra_toml)
        started.append(one)
        return one

    yield start
    failures = []
    for one in started:
        failures += _stop_kernel(one)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def module_kernel_factory():
    started: list[dbkit.Kernel] = []

    def start(extra_toml: str = "") -> dbkit.Kernel:
        one = _start_kernel(extra_toml)
        started.append(one)
        return one

    yield start
    failures = []
    for one in started:
        failures += _stop_kernel(one)
    assert not failures, "\n".join(failures)
