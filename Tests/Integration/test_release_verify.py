"""`meltybase release keygen|sign` and `meltybase verify-release` on the real binary, and
`scripts/package` (issue 18, docs/release.md).

- a signed folder verifies ("release verified: N files"), also as a ZIP and with the key
  from a file, from MELTYBASE_RELEASE_PUBLIC_KEY, or from the folder (with a warning);
- one changed byte, a missing file, an added file, a changed SHA256SUMS or another key
  each fail with exit status 1 and the file named; data/ (the kernel's) is ignored;
- SHA256SUMS is sha256sum's format (`sha256sum -c` accepts it);
- signing refuses a key inside the folder, a key readable by others, and symbolic links;
- scripts/package on the debug build: the ZIP holds one folder with the binary, plugins,
  resource bundles, lib/, the config files and the signature, no private key, and
  verifies with the signing key's public half.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from meltybase_kernel import ROOT, kernel_binary


def meltybase(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin"}
    environment.update(env or {})
    return subprocess.run([str(kernel_binary()), *args], capture_output=True, text=True, env=environment, timeout=120)


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    """A fresh release key pair: the secret key file and the public key hex."""
    result = meltybase("release", "keygen", "--out", str(tmp_path / "keys"))
    assert result.returncode == 0, result.stderr
    secret = tmp_path / "keys" / "release-signing.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public = (tmp_path / "keys" / "release-signing.pub").read_text().strip()
    assert len(public) == 64
    assert public in result.stdout
    assert secret.read_text().strip() not in result.stdout + result.stderr
    return secret, public


def signed_folder(tmp_path: Path, secret: Path) -> Path:
    folder = tmp_path / "meltybase-9.9.9-linux-test"
    (folder / "lib").mkdir(parents=True)
    (folder / "meltybase").write_bytes(b"\x7fELF binary" * 100)
    (folder / "libVaultPlugin.so").write_bytes(bytes(range(256)) * 40)
    (folder / "lib" / "libswiftCore.so").write_bytes(b"runtime")
    (folder / "plugins.toml").write_text('[kernel]\ndata_dir = "data"\n')
    result = meltybase("release", "sign", "--key", str(secret), str(folder))
    assert result.returncode == 0, result.stderr
    assert "signed 5 files" in result.stdout
    return folder


def test_signed_folder_verifies_and_is_sha256sum_format(tmp_path: Path, key: tuple[Path, str]) -> None:
    secret, public = key
    folder = signed_folder(tmp_path, secret)
    assert (folder / "release-signing.pub").read_text().strip() == public
    assert len((folder / "SHA256SUMS.sig").read_text().strip()) == 128
    listed = [line.split("  ", 1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    assert listed == sorted(["lib/libswiftCore.so", "libVaultPlugin.so", "meltybase", "plugins.toml", "release-signing.pub"])
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    result = meltybase("verify-release", str(folder), "--public-key", public)
    assert result.returncode == 0, result.stderr
    assert "release verified: 5 files" in result.stdout
    assert "warning" not in result.stderr

    from_file = meltybase("verify-release", str(folder), "--public-key", str(secret.with_suffix(".pub")))
    assert from_file.returncode == 0, from_file.stderr

    # The kernel's data/ folder (a real directory) is neither listed nor checked, and the output says so.
    (folder / "data" / "postgres").mkdir(parents=True)
    (folder / "data" / "postgres" / "PG_VERSION").write_text("15\n")
    with_data = meltybase("verify-release", str(folder), "--public-key", public)
    assert with_data.returncode == 0 and "not checked: data/" in with_data.stdout, with_data.stdout + with_data.stderr

    # A symbolic link named data is not the kernel's folder: it is reported.
    (folder / "data" / "postgres" / "PG_VERSION").unlink()
    (folder / "data" / "postgres").rmdir()
    (folder / "data").rmdir()
    (folder / "data").symlink_to(tmp_path)
    linked = meltybase("verify-release", str(folder), "--public-key", public)
    assert linked.returncode == 1 and "extra: data" in linked.stderr.splitlines(), linked.stderr


def test_package_key_alone_warns_and_environment_key_wins(tmp_path: Path, key: tuple[Path, str]) -> None:
    secret, public = key
    folder = signed_folder(tmp_path, secret)
    own = meltybase("verify-release", str(folder))
    assert own.returncode == 0, own.stderr
    assert "proves the files are intact, not who made them" in own.stderr
    assert public in own.stderr

    other = meltybase("release", "keygen", "--out", str(tmp_path / "other"))
    assert other.returncode == 0, other.stderr
    other_public = (tmp_path / "other" / "release-signing.pub").read_text().strip()
    wrong = meltybase("verify-release", str(folder), env={"MELTYBASE_RELEASE_PUBLIC_KEY": other_public})
    assert wrong.returncode == 1
    assert "does not match SHA256SUMS" in wrong.stderr
    assert other_public in wrong.stderr
    right = meltybase("verify-release", str(folder), env={"MELTYBASE_RELEASE_PUBLIC_KEY": public})
    assert right.returncode == 0, right.stderr


def test_changes_are_named(tmp_path: Path, key: tuple[Path, str]) -> None:
    secret, public = key
    folder = signed_folder(tmp_path, secret)
    plugin = folder / "libVaultPlugin.so"
    data = bytearray(plugin.read_bytes())
    data[1000] ^= 0x01
    plugin.write_bytes(bytes(data))
    (folder / "lib" / "libswiftCore.so").unlink()
    (folder / "lib" / "libevil.so").write_bytes(b"added")
    result = meltybase("verify-release", str(folder), "--public-key", public)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "modified: libVaultPlugin.so" in lines
    assert "missing: lib/libswiftCore.so" in lines
    assert "extra: lib/libevil.so" in lines
    assert "release NOT verified: 3 files" in result.stderr
    assert "release verified" not in result.stdout


def test_changed_sums_or_signature_fail(tmp_path: Path, key: tuple[Path, str]) -> None:
    secret, public = key
    folder = signed_folder(tmp_path, secret)
    sums = folder / "SHA256SUMS"
    original = sums.read_text()
    sums.write_text(original.replace("plugins.toml\n", "plugins.toml\n", 1) + "0" * 64 + "  extra\n")
    result = meltybase("verify-release", str(folder), "--public-key", public)
    assert result.returncode == 1
    assert "SHA256SUMS was changed, or the package was signed with another key" in result.stderr
    sums.write_text(original)
    (folder / "SHA256SUMS.sig").unlink()
    unsigned = meltybase("verify-release", str(folder), "--public-key", public)
    assert unsigned.returncode == 1
    assert "SHA256SUMS.sig is missing" in unsigned.stderr
    bad_key = meltybase("verify-release", str(folder), "--public-key", "not-a-key")
    assert bad_key.returncode == 1
    assert "64 hex characters" in bad_key.stderr


def test_zip_verifies_and_a_changed_zip_fails(tmp_path: Path, key: tuple[Path, str]) -> None:
    secret, public = key
    folder = signed_folder(tmp_path, secret)
    archive = tmp_path / "release.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, path.relative_to(tmp_path))
    result = meltybase("verify-release", str(archive), "--public-key", public)
    assert result.returncode == 0, result.stderr
    assert "release verified: 5 files" in result.stdout

    changed = tmp_path / "changed.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(changed, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename.endswith("meltybase"):
                content = content[:-1] + b"X"
            target.writestr(item, content)
    refused = meltybase("verify-release", str(changed), "--public-key", public)
    assert refused.returncode == 1
    assert "modified: meltybase" in refused.stderr.splitlines()

    # A zip carries nothing the kernel makes: keys planted under data/ are extra, not skipped.
    planted = tmp_path / "planted.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(planted, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr(f"{folder.name}/data/mfa-secret.key", "00" * 32 + "\n")
    smuggled = meltybase("verify-release", str(planted), "--public-key", public)
    assert smuggled.returncode == 1
    assert "extra: data/mfa-secret.key" in smuggled.stderr.splitlines(), smuggled.stderr


def test_sign_refuses_unsafe_input(tmp_path: Path, key: tuple[Path, str]) -> None:
    secret, _ = key
    folder = signed_folder(tmp_path, secret)
    inside = folder / "release-signing.key"
    shutil.copy(secret, inside)
    os.chmod(inside, 0o600)
    result = meltybase("release", "sign", "--key", str(inside), str(folder))
    assert result.returncode == 1
    assert "a package never holds a private key" in result.stderr
    inside.unlink()

    loose = tmp_path / "loose.key"
    shutil.copy(secret, loose)
    os.chmod(loose, 0o644)
    result = meltybase("release", "sign", "--key", str(loose), str(folder))
    assert result.returncode == 1
    assert "chmod 600" in result.stderr

    (folder / "link.so").symlink_to(folder / "meltybase")
    result = meltybase("release", "sign", "--key", str(secret), str(folder))
    assert result.returncode == 1
    assert "link.so is not a regular file" in result.stderr

    again = meltybase("release", "keygen", "--out", str(secret.parent))
    assert again.returncode == 1
    assert "never overwrites a key" in again.stderr


def test_scripts_package_builds_a_verifiable_zip_without_private_keys(tmp_path: Path, key: tuple[Path, str]) -> None:
    if not shutil.which("zip") or not shutil.which("patchelf") and os.geteuid() != 0:
        pytest.skip("scripts/package needs zip and patchelf (it installs patchelf itself as root)")
    secret, public = key
    out = tmp_path / "dist"
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "package"), "--configuration", "debug", "--no-build", "--out", str(out), "--version", "9.9.9-test",
         "--signing-key", str(secret)],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    archive = Path(result.stdout.strip().splitlines()[-1])
    name = f"meltybase-9.9.9-test-linux-{os.uname().machine}"
    assert archive == out / f"{name}.zip"
    print(f"zip size (debug build): {archive.stat().st_size / 1e6:.1f} MB")

    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        assert {entry.split("/", 1)[0] for entry in names} == {name}
        files = {entry.split("/", 1)[1] for entry in names if not entry.endswith("/")}
        for expected in ["meltybase", "libDatabasePlugin.so", "libVaultPlugin.so", "libecho_c.so", "plugins.toml", "docker-compose.yml",
                         "meltybase.service", "README.md", "SHA256SUMS", "SHA256SUMS.sig", "release-signing.pub",
                         "lib/libswiftCore.so", "lib/libpq.so.5", "lib/libsodium.so.23",
                         "MeltyBase_Kernel.resources/Assets/index.html"]:
            assert expected in files, expected
        assert not [entry for entry in files if entry.endswith(".key") or entry.endswith(".pem")]
        secret_hex = secret.read_text().strip().encode()
        for entry in files:
            if not entry.startswith("lib/") and not entry.endswith(".so") and entry != "meltybase":
                assert secret_hex not in zipped.read(f"{name}/{entry}"), entry
        sums = zipped.read(f"{name}/SHA256SUMS").decode()
        assert sums.count("\n") == len(files) - 2  # every file but SHA256SUMS and its signature

    verified = meltybase("verify-release", str(archive), "--public-key", public)
    assert verified.returncode == 0, verified.stderr
    assert f"release verified: {len(files) - 2} files" in verified.stdout
