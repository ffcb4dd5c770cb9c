"""One key set per cluster (docs/cluster.md, "One key set").

Kernels that share a system database must hold the same sealing, audit signing and
evaluation license keys. A kernel started with other keys refuses to start and names the
key, instead of answering every portal request with 401/503; a kernel given the cluster's
key folder ([kernel] keys_dir) joins and opens what the others sealed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

import dbkit  # noqa: E402

KEY_FILES = ("mfa-secret.key", "audit-signing.key", "audit-signing.pub", "evaluation-license-signing.key")
VAULT_TOML = """
[plugins.vault]
path = "libVaultPlugin.so"

[plugins.vault.config]
master_key_file = "vault-master.key"
"""


def vault_key(value: str):
    def write(kernel: dbkit.Kernel) -> None:
        key = kernel.directory / "vault-master.key"
        key.write_text(value + "\n")
        key.chmod(0o600)
    return write


@pytest.fixture(scope="module")
def services():
    kernel = dbkit.Kernel(VAULT_TOML, prepare=vault_key(secrets.token_hex(32)))
    try:
        kernel.portal = kernel.create_portal("keyset", plugins="database,vault")
        stored = kernel.portal.request("POST", f"{kernel.portal.base}/vault/v1/secrets", json={"name": "API_KEY", "value": "s3cret"})
        assert stored.status_code in (200, 201), stored.text
        yield kernel
    finally:
        kernel.stop()


def shared_servers_toml(services: dbkit.Kernel, keys_dir: Path | None = None) -> str:
    keys = f'[kernel]\nkeys_dir = "{keys_dir}"\n' if keys_dir else ""
    return keys + VAULT_TOML + f"""
[database]
url = "host={services.socket_directory()} port=5432 user=meltybase dbname=meltybase"

[redis]
url = "unix://{services.data_dir / 'redis' / 'redis.sock'}"
"""


def start_refused(services: dbkit.Kernel, keys_dir: Path | None) -> str:
    """Starts a kernel on the cluster's servers and returns its output; it must exit non-zero."""
    directory = Path(tempfile.mkdtemp(prefix="meltybase-keyset-"))
    os.chmod(directory, 0o755)
    config = directory / "meltybase.toml"
    port = dbkit.free_port()
    config.write_text(dbkit.CONFIG_TOML.format(port=port, plugin=dbkit.PLUGIN_FILE) + shared_servers_toml(services, keys_dir))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    try:
        done = subprocess.run(
            [str(dbkit.kernel_binary()), "serve", "--config", str(config), "--data-dir", str(directory / "data"), "--port", str(port)],
            capture_output=True, text=True, timeout=120, env=environment, cwd=directory)
        output = done.stdout + done.stderr
        assert done.returncode != 0, f"the kernel with other keys started:\n{output[-3000:]}"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/system/status", timeout=2)
        return output
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def copy_key_set(services: dbkit.Kernel, names=KEY_FILES) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="meltybase-keys-"))
    os.chmod(folder, 0o700)
    for name in names:
        shutil.copy2(services.data_dir / name, folder / name)
    return folder


def keys_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(dbkit.kernel_binary()), "keys", *arguments], capture_output=True, text=True, timeout=60)


def test_a_kernel_with_its_own_keys_refuses_to_start_and_names_the_sealing_key(services):
    output = start_refused(services, keys_dir=None)
    assert "this kernel's sealing key" in output
    assert "mfa-secret.key" in output and "keys_dir" in output and "docs/cluster.md" in output
    # Key ids are named, key material never: the key file's hex is not in the output.
    own = services.data_dir / "mfa-secret.key"
    assert own.read_text().strip() not in output


def test_a_kernel_with_another_audit_key_is_refused_naming_that_key(services):
    folder = copy_key_set(services, names=("mfa-secret.key", "evaluation-license-signing.key"))
    try:
        output = start_refused(services, keys_dir=folder)
        assert "this kernel's audit signing key" in output
        assert str(folder / "audit-signing.key") in output
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_kernel_without_the_cluster_evaluation_key_is_refused(services):
    folder = copy_key_set(services, names=("mfa-secret.key", "audit-signing.key", "audit-signing.pub"))
    try:
        output = start_refused(services, keys_dir=folder)
        # Before setup a kernel creates the key it lacks, which then differs from the cluster's.
        assert "this kernel's evaluation license signing key" in output, output[-2000:]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_kernel_given_the_cluster_key_set_joins_and_opens_sealed_portal_secrets(services):
    folder = copy_key_set(services)
    # Its vault has another master key than the cluster's (checked at the end).
    kernel = dbkit.Kernel(shared_servers_toml(services, folder), prepare=vault_key(secrets.token_hex(32)))
    try:
        portal = dbkit.Portal(kernel, services.portal.name, services.portal.anon, services.portal.service)
        kernel._wait_for_portal(portal)
        # The portal's JWT secret was sealed by the first kernel: this one verifies its service key.
        answer = portal.rest("GET", "")
        assert answer.status_code == 200, answer.text
        forged = portal.rest("GET", "", key=portal.service[:-6] + "AAAAAA")
        assert forged.status_code == 401, forged.text
        # Nothing was written into its own data directory: the keys came from keys_dir.
        assert not (kernel.data_dir / "mfa-secret.key").exists()

        # The vault's master key is the cluster's too: with another one, the vault says so
        # (naming key ids, never keys) and writes nothing under a second master key.
        read = portal.request("GET", f"{portal.base}/vault/v1/secrets/API_KEY/value")
        assert read.status_code == 503 and read.json()["code"] == "master_key_unavailable", read.text
        assert "MELTYBASE_MASTER_KEY" in read.json()["message"]
        write = portal.request("POST", f"{portal.base}/vault/v1/secrets", json={"name": "OTHER", "value": "x"})
        assert write.status_code == 503, write.text
        listed = services.portal.request("GET", f"{services.portal.base}/vault/v1/secrets")
        assert listed.status_code == 200 and "OTHER" not in listed.text and "API_KEY" in listed.text
        value = services.portal.request("GET", f"{services.portal.base}/vault/v1/secrets/API_KEY/value")
        assert value.status_code == 200 and "s3cret" in value.text
    finally:
        kernel.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_cluster_registered_before_the_check_takes_the_key_its_sealed_values_need(services):
    """An upgraded cluster has sealed values but no registry rows: the sealing key that
    opens them is registered, not the one of whichever kernel starts first."""
    services.superuser_sql("DELETE FROM meltybase.cluster_keys", database="meltybase")
    output = start_refused(services, keys_dir=None)
    assert "this kernel's sealing key" in output
    registered = services.superuser_sql("SELECT key_id FROM meltybase.cluster_keys WHERE name = 'sealing'", database="meltybase").strip()
    box_id = keys_cli("show", "--dir", str(services.data_dir)).stdout
    assert registered and registered in box_id


def test_keys_init_writes_a_private_key_set_once_and_show_names_it_without_secrets(tmp_path):
    folder = tmp_path / "keys"
    first = keys_cli("init", "--out", str(folder))
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([*KEY_FILES, "vault-master.key"])
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in names:
        if not name.endswith(".pub"):
            assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    assert first.stdout.count("created") == 4
    contents = {name: (folder / name).read_text() for name in names}
    second = keys_cli("init", "--out", str(folder))
    assert second.returncode == 0 and "created" not in second.stdout
    assert {name: (folder / name).read_text() for name in names} == contents
    shown = keys_cli("show", "--dir", str(folder))
    assert shown.returncode == 0
    for name in ("mfa-secret.key", "audit-signing.key", "evaluation-license-signing.key", "vault-master.key"):
        secret = contents[name].strip()
        assert secret not in shown.stdout and secret not in first.stdout
    assert contents["audit-signing.pub"].strip() in shown.stdout
    # A key file others can read is refused with the chmod to run.
    os.chmod(folder / "mfa-secret.key", 0o644)
    loose = keys_cli("show", "--dir", str(folder))
    assert loose.returncode != 0 and "chmod 600" in loose.stderr


def test_an_empty_vault_is_not_split_across_two_master_keys():
    """No data key exists yet, so only the registry can tell: the first kernel's vault use
    registers its master key, and a kernel with another one writes nothing."""
    first = dbkit.Kernel(VAULT_TOML, prepare=vault_key(secrets.token_hex(32)))
    folder = None
    second = None
    try:
        portal = first.create_portal("emptyvault", plugins="database,vault")
        listed = portal.request("GET", f"{portal.base}/vault/v1/secrets")
        assert listed.status_code == 200, listed.text
        folder = copy_key_set(first)
        second = dbkit.Kernel(shared_servers_toml(first, folder), prepare=vault_key(secrets.token_hex(32)))
        on_second = dbkit.Portal(second, portal.name, portal.anon, portal.service)
        second._wait_for_portal(on_second)
        refused = on_second.request("POST", f"{on_second.base}/vault/v1/secrets", json={"name": "SPLIT", "value": "x"})
        assert refused.status_code == 503 and refused.json()["code"] == "master_key_unavailable", refused.text
        assert "master key id" in refused.json()["message"]
        stored = portal.request("POST", f"{portal.base}/vault/v1/secrets", json={"name": "KEPT", "value": "y"})
        assert stored.status_code in (200, 201), stored.text
        names = portal.request("GET", f"{portal.base}/vault/v1/secrets").text
        assert "KEPT" in names and "SPLIT" not in names
    finally:
        if second is not None:
            second.stop()
        first.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def test_portal_create_on_a_machine_with_other_keys_is_refused_before_creating_anything(services, tmp_path):
    folder = tmp_path / "other-keys"
    made = keys_cli("init", "--out", str(folder))
    assert made.returncode == 0, made.stderr
    config = tmp_path / "meltybase.toml"
    config.write_text(dbkit.CONFIG_TOML.format(port=dbkit.free_port(), plugin=dbkit.PLUGIN_FILE) + shared_servers_toml(services, folder))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    done = subprocess.run([str(dbkit.kernel_binary()), "portal", "create", "wrongkeys", "--plugins", "database", "--config", str(config),
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode != 0
    assert "sealing key" in done.stderr and "keys_dir" in done.stderr, done.stdout + done.stderr
    assert services.superuser_sql("select count(*) from meltybase.portals where name = 'wrongkeys'", database="meltybase").strip() == "0"
    # A missing key file is not made up either.
    empty = tmp_path / "no-keys"
    empty.mkdir(mode=0o700)
    config.write_text(dbkit.CONFIG_TOML.format(port=dbkit.free_port(), plugin=dbkit.PLUGIN_FILE) + shared_servers_toml(services, empty))
    missing = subprocess.run([str(dbkit.kernel_binary()), "portal", "create", "nokeys", "--plugins", "database", "--config", str(config),
                              "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=120, env=environment)
    assert missing.returncode != 0 and "does not exist" in missing.stderr, missing.stdout + missing.stderr
    assert not (empty / "mfa-secret.key").exists()
