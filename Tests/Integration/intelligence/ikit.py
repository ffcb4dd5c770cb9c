"""Shared pieces of the Intelligence plugin's integration tests.

`start_kernel()` starts `meltybase serve` (Tests/Integration/database/dbkit.py) with the
Database, Vault and Intelligence plugins on the embedded Postgres and Redis. Tests append
keys to the last table of the TOML, so `[plugins.intelligence.config]` comes last.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "database"))

import dbkit  # noqa: E402

INTELLIGENCE_TOML = """
[metering]
flush_interval_seconds = 1

[plugins.vault]
path = "libVaultPlugin.so"

[plugins.vault.config]
master_key_file = "vault-master.key"

[plugins.intelligence]
path = "libIntelligencePlugin.so"
{plugin_keys}
[plugins.intelligence.config]
"""

PLUGINS = "database,vault,intelligence"


def start_kernel(extra_toml: str = "", egress_hosts: list[str] | None = None) -> dbkit.Kernel:
    """A kernel with the Intelligence plugin; `extra_toml` is appended (to the
    `[plugins.intelligence.config]` table unless it opens tables of its own);
    `egress_hosts` (e.g. a local model server's "127.0.0.1:<port>") become the plugin's
    `http_fetch` allow-list."""

    def prepare(kernel: dbkit.Kernel) -> None:
        key = kernel.directory / "vault-master.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)

    try:
        hosts = "" if egress_hosts is None else "egress_hosts = [" + ", ".join(f'"{host}"' for host in egress_hosts) + "]\n"
        return dbkit.Kernel(INTELLIGENCE_TOML.replace("{plugin_keys}", hosts) + extra_toml, prepare=prepare)
    except dbkit.SetupError as error:
        pytest.fail(f"cannot start the kernel with the Intelligence plugin: {error}", pytrace=False)


def stop_kernel(kernel: dbkit.Kernel) -> list[str]:
    return dbkit.stop_and_check(kernel)
