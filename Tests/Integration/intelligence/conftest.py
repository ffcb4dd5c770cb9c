"""Fixtures for the Intelligence plugin's integration tests.

- `kernel` (session): one `meltybase serve` with the Database, Vault and Intelligence
  plugins on the embedded Postgres and Redis (ikit.start_kernel).
- `new_portal`: `new_portal()` makes a fresh portal with those three plugins.
- `llm` (session): the local OpenAI-compatible model server (llmkit.ModelServer,
  Tests/Support/openai_server.py); call `llm.reset()` then `llm.script([...])` in a test.
- `llm_kernel` (session): a second kernel whose Intelligence egress allows `llm`'s host.
- `new_llm_portal`: `new_llm_portal()` makes a fresh portal on `llm_kernel`;
  `llmkit.configure_portal(portal, llm)` points its model provider at the server.
- `llm_portal`: a fresh portal on `llm_kernel` already configured for `llm` (API key in
  its Vault, non-streaming), with the server reset.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "database"))

import dbkit  # noqa: E402
import ikit  # noqa: E402
import llmkit  # noqa: E402


@pytest.fixture(scope="session")
def kernel():
    started = ikit.start_kernel()
    yield started
    failures = ikit.stop_kernel(started)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def new_portal(kernel):
    return dbkit.portal_factory(kernel, "ai", ikit.PLUGINS)


@pytest.fixture(scope="session")
def llm():
    server = llmkit.start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llm_kernel(llm):
    started = ikit.start_kernel(egress_hosts=[llm.host])
    yield started
    failures = ikit.stop_kernel(started)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def new_llm_portal(llm_kernel):
    return dbkit.portal_factory(llm_kernel, "llm", ikit.PLUGINS)


@pytest.fixture
def llm_portal(llm, new_llm_portal):
    llm.reset()
    portal = new_llm_portal()
    llmkit.configure_portal(portal, llm)
    return portal
