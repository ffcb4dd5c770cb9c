"""The release package on a bare Debian 12 without the Swift toolchain (issue 18).

`scripts/package --configuration debug --no-build` builds the ZIP; it is unpacked into
/opt of a fresh Debian bookworm minbase root (debian_root.py: debootstrap once, cached in
.build-debian-root/, an overlay per run; its own mount and pid namespaces, the host's
network). Inside, as root: `./meltybase verify-release .`, then `./meltybase serve
--install-deps` (apt installs Postgres 15 and Redis, the kernel runs Postgres as an account
it creates). From the host: the pulse, setup (license + admin), a Database portal,
supabase-py's auth and REST calls; the idle memory of every process in the root; and
`verify-release` refusing a copy with one byte of a plugin changed.

The whole module shares one root and one kernel. Figures (ZIP size, unzip to the first
200, apt time, idle memory) are printed and written to .build-debian-root/figures.txt.
Skipped only when not root or debootstrap is missing; as root it always runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

import dbkit  # noqa: E402
import debian_root  # noqa: E402
from instance_setup import set_up_instance  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIGURES_FILE = debian_root.CACHE / "figures.txt"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery 42"
STARTUP_TIMEOUT = 900  # apt downloads and installs Postgres and Redis first
IDLE_SECONDS = 10

FIGURES: dict[str, str] = {}

if reason := debian_root.unavailable_reason():
    pytest.skip(reason, allow_module_level=True)


def figure(name: str, value: str) -> None:
    FIGURES[name] = value
    print(f"{name}: {value}")


def _log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


class InsideKernel:
    """What dbkit.Portal and instance_setup need of a kernel: its URL."""

    def __init__(self, url: str):
        self.url = url


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The ZIP that scripts/package builds from the debug build (no rebuild); set
    MELTYBASE_PACKAGE_CONFIGURATION=release to run the same tests on a release build made
    beforehand (`swift build -c release`), for the figures of the package users get."""
    script = REPO / "scripts" / "package"
    assert script.exists(), f"{script} does not exist (issue 18 delivers it)"
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    configuration = os.environ.get("MELTYBASE_PACKAGE_CONFIGURATION", "debug")
    assert configuration in ("debug", "release"), f"MELTYBASE_PACKAGE_CONFIGURATION must be debug or release, found {configuration!r}"
    result = subprocess.run([str(script), "--configuration", configuration, "--no-build", "--out", str(out)],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, f"scripts/package failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"scripts/package printed nothing; stderr:\n{result.stderr[-4000:]}"
    zip_path = Path(lines[-1].strip())
    assert zip_path.is_file() and zip_path.parent == out, f"the last line of scripts/package is not the ZIP in {out}: {lines[-1]!r}"
    assert re.fullmatch(r"meltybase-.+-linux-[a-z0-9_]+\.zip", zip_path.name), zip_path.name
    figure("package build (s)", f"{time.monotonic() - started:.1f}")
    figure("zip size (MB)", f"{zip_path.stat().st_size / 1e6:.1f}")
    return zip_path


@pytest.fixture(scope="module")
def root():
    """A fresh overlay of the cached Debian 12 root (debootstrap on the first run)."""
    started = time.monotonic()
    base, debootstrap_seconds = debian_root.cached_root()
    if debootstrap_seconds is not None:
        figure("debootstrap (s)", f"{debootstrap_seconds:.1f}")
    view = debian_root.DebianRoot(base)
    figure("root ready (s)", f"{time.monotonic() - started:.1f} ({'overlayfs' if view.use_overlay else 'cp -a'}: "
           f"{view.prepare_seconds:.2f} s)")
    try:
        yield view
    finally:
        view.close()
        _write_figures()


def _write_figures() -> None:
    if not FIGURES:
        return
    line = "package figures: " + "; ".join(f"{name} {value}" for name, value in FIGURES.items())
    print(line)
    try:
        FIGURES_FILE.write_text(line + "\n" + json.dumps(FIGURES, indent=2) + "\n")
    except OSError as error:
        print(f"cannot write {FIGURES_FILE}: {error}")


@pytest.fixture(scope="module")
def unpacked(root, package) -> dict:
    """The ZIP unpacked on the host into the root's /opt (the root has no unzip)."""
    started = time.monotonic()
    result = subprocess.run(["unzip", "-q", str(package), "-d", str(root.host_path("/opt"))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"unzip failed: {result.stdout}{result.stderr}"
    folder = package.name.removesuffix(".zip")
    assert root.host_path(f"/opt/{folder}/meltybase").is_file(), \
        f"the ZIP does not unpack into one folder {folder}/ holding meltybase: {sorted(p.name for p in root.host_path('/opt').iterdir())}"
    return {"folder": f"/opt/{folder}", "name": folder, "unzip_seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def stack(root, unpacked, tmp_path_factory):
    """`./meltybase serve --install-deps` inside the root on a free port, until its pulse answers 200."""
    log_path = tmp_path_factory.mktemp("kernel") / "kernel.log"
    port = dbkit.free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "ab")
    started = time.monotonic()
    process = root.popen(["./meltybase", "serve", "--install-deps", "--port", str(port)], cwd=unpacked["folder"], log=log)
    apt_started = apt_ended = None
    pulse = None
    deadline = started + STARTUP_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            text = _log_text(log_path)
            if apt_started is None and "apt-get" in text:
                apt_started = time.monotonic()
            if apt_started is not None and apt_ended is None and "[MeltyEmbedded]" in text:
                apt_ended = time.monotonic()  # the kernel goes on with initdb
            try:
                pulse = requests.get(url + "/v1/system/status", timeout=5)
                if pulse.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.25)
        first_200 = time.monotonic()
        assert pulse is not None and pulse.status_code == 200, (
            f"`meltybase serve --install-deps` did not answer the pulse with 200 within {STARTUP_TIMEOUT} s "
            f"(exit code {process.poll()}); log {log_path}:\n{_log_text(log_path)[-6000:]}")
        figure("unzip (s)", f"{unpacked['unzip_seconds']:.1f}")
        figure("serve to first 200 (s)", f"{first_200 - started:.1f}")
        # Other tests (ldd, verify-release) ran between the unzip and `serve`: not counted.
        figure("unzip to first 200 (s)", f"{unpacked['unzip_seconds'] + first_200 - started:.1f}")
        if apt_started is not None and apt_ended is not None:
            figure("apt update + install (s)", f"{apt_ended - apt_started:.1f}")
        yield {"url": url, "port": port, "process": process, "log": log_path, "pulse": pulse.json()}
    finally:
        code = _stop(root, process)
        log.close()
        print(f"meltybase serve exited with {code}; log {log_path}")
    text = _log_text(log_path)
    assert code in (0, 143, -signal.SIGTERM) and "Fatal error:" not in text, \
        f"`meltybase serve` did not stop cleanly on SIGTERM (exit code {code}); log {log_path}:\n{text[-4000:]}"


def _stop(root: debian_root.DebianRoot, process: subprocess.Popen) -> int | None:
    """SIGTERM to the supervisor inside (nsenter's child: nsenter does not forward signals); its exit code."""
    if process.poll() is None:
        supervisor = root.child_of(process.pid)
        if supervisor is not None:
            try:
                os.kill(supervisor, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def portal(stack):
    """Setup (evaluation license, admin at aal2) and a portal with the Database and Vault plugins, over HTTP."""
    kernel = InsideKernel(stack["url"])
    token = set_up_instance(kernel, ADMIN_EMAIL, ADMIN_PASSWORD)["pair"]["access_token"]
    name = f"pkg-{uuid.uuid4().hex[:8]}"
    created = requests.post(stack["url"] + "/v1/hub/portals", json={"name": name, "plugins": ["database", "vault"]},
                            headers={"authorization": f"Bearer {token}"}, timeout=60)
    assert created.status_code == 201, created.text
    keys = created.json()
    made = dbkit.Portal(kernel, name, keys["anon_key"], keys["service_role_key"])
    deadline = time.monotonic() + 60
    while made.rest("GET", "").status_code != 200:
        assert time.monotonic() < deadline, f"portal {name} not served: {dbkit.describe(made.rest('GET', ''))}"
        time.sleep(0.2)
    yield made
    made.close()


# --- tests --------------------------------------------------------------------------


def test_the_root_is_a_bare_debian_12_without_the_swift_toolchain(root):
    result = root.shell("cat /etc/debian_version; command -v swift swiftc || echo no-swift; "
                        "test -e /opt/swift && echo has-opt-swift || echo no-opt-swift; "
                        "command -v postgres psql redis-server || echo no-servers; "
                        "ls /usr/lib/postgresql 2>/dev/null || echo no-postgresql")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0].startswith("12."), f"not Debian 12: {result.stdout}"
    assert "no-swift" in lines and "no-opt-swift" in lines, f"the Swift toolchain is visible inside: {result.stdout}"
    assert "no-servers" in lines and "no-postgresql" in lines, f"Postgres or Redis is already installed: {result.stdout}"


def test_every_binary_of_the_package_finds_its_libraries(root, unpacked):
    """ldd inside the bare root, before any apt install: the binary must start to install deps."""
    folder = root.host_path(unpacked["folder"])
    elves = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and (p.name == "meltybase" or p.suffix == ".so") and p.read_bytes()[:4] == b"\x7fELF")
    assert "meltybase" in elves, f"meltybase is not an ELF binary in {unpacked['folder']}"
    missing = {}
    for name in elves:
        result = root.run(["ldd", f"./{name}"], cwd=unpacked["folder"])
        lost = [line.strip() for line in result.stdout.splitlines() if "not found" in line]
        if result.returncode != 0 or lost:
            missing[name] = lost or [result.stdout + result.stderr]
    assert not missing, f"libraries not found on a bare Debian 12 (bundle them in lib/ or depend on them): {missing}"


def test_verify_release_accepts_the_unpacked_package(root, unpacked):
    result = root.run(["./meltybase", "verify-release", "."], cwd=unpacked["folder"], timeout=120)
    assert result.returncode == 0, f"verify-release refused the unmodified package ({result.returncode}):\n{result.stdout}{result.stderr}"
    for name in ("SHA256SUMS", "SHA256SUMS.sig", "release-signing.pub"):
        assert root.host_path(f"{unpacked['folder']}/{name}").is_file(), f"{name} is missing from the package"


def test_serve_installs_its_dependencies_and_answers_the_pulse(root, stack):
    assert stack["pulse"].get("pulse") == "active", stack["pulse"]
    installed = root.shell("command -v redis-server; ls /usr/lib/postgresql/*/bin/postgres")
    assert installed.returncode == 0, f"Postgres or Redis is not installed after --install-deps:\n{installed.stdout}{installed.stderr}"
    for words in (("postgres",), ("redis-server",)):
        assert root.find_process(*words) is not None, f"no {words[0]} process runs inside the root"
    postgres = root.find_process("postgres", "-D")
    status = Path(f"/proc/{postgres}/status").read_text() if postgres else ""
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    assert uid and uid.group(1) != "0", f"Postgres does not run as an unprivileged account: {status[:300]}"


def test_the_https_listener_serves_certificates_made_on_first_start(root, stack, unpacked):
    """No private key ships: the package's tls = "auto" listener made its CA and server
    certificate in data/certs on this machine."""
    certs = root.host_path(unpacked["folder"] + "/data/certs")
    for name in ("ca.key", "server.key", "admin.key"):
        assert (certs / name).stat().st_mode & 0o777 == 0o600, name
    answer = requests.get("https://127.0.0.1:3443/v1/system/status", verify=str(certs / "ca.pem"), timeout=30)
    assert answer.status_code == 200 and answer.json()["pulse"] == "active", answer.text
    with pytest.raises(requests.exceptions.SSLError):
        requests.get("https://127.0.0.1:3443/v1/system/status", timeout=30)


def test_supabase_py_auth_and_rest_against_the_packaged_kernel(root, stack, unpacked, portal):
    portal.setup("create table notes (id serial primary key, owner uuid not null default auth.uid(), body text);"
                 "alter table notes enable row level security;"
                 "create policy own on notes using (owner = auth.uid()) with check (owner = auth.uid());"
                 "grant select, insert on notes to authenticated; grant usage on sequence notes_id_seq to authenticated;",
                 "notes")
    from supabase import ClientOptions, create_client

    def user_client(tag: str):
        client = create_client(portal.base, portal.anon,
                               options=ClientOptions(auto_refresh_token=False, persist_session=False))
        email = f"{tag}-{uuid.uuid4().hex[:8]}@example.com"
        signed_up = client.auth.sign_up({"email": email, "password": "correct-Horse-7-battery"})
        assert signed_up.user is not None and signed_up.user.email == email, signed_up
        session = client.auth.sign_in_with_password({"email": email, "password": "correct-Horse-7-battery"}).session
        assert session is not None and session.access_token, "sign-in returned no session"
        client.postgrest.auth(session.access_token)
        return client, session.user.id

    ann, ann_id = user_client("ann")
    bob, _ = user_client("bob")
    inserted = ann.table("notes").insert({"body": "from the package"}).execute()
    assert inserted.data and inserted.data[0]["owner"] == ann_id, inserted.data
    assert [row["body"] for row in ann.table("notes").select("*").execute().data] == ["from the package"]
    assert bob.table("notes").select("*").execute().data == [], "RLS let another user read the row"
    # The packaged CLI, inside the root, sees the portal in the running kernel's system database.
    listed = root.run(["./meltybase", "portal", "list"], cwd=unpacked["folder"], timeout=120)
    assert listed.returncode == 0 and portal.name in listed.stdout, f"`meltybase portal list`:\n{listed.stdout}{listed.stderr}"


def test_the_vault_works_with_the_master_key_made_on_first_start(root, stack, unpacked, portal):
    """No key ships in the package: the kernel made the key set, the vault's master key with it."""
    key = root.host_path(unpacked["folder"] + "/data/vault-master.key")
    stored = portal.request("POST", f"{portal.base}/vault/v1/secrets", json={"name": "PKG_SECRET", "value": "from-the-package"})
    assert stored.status_code in (200, 201), dbkit.describe(stored)
    read = portal.request("GET", f"{portal.base}/vault/v1/secrets/PKG_SECRET/value")
    assert read.status_code == 200 and read.json()["value"] == "from-the-package", dbkit.describe(read)
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600


def test_idle_memory_of_the_whole_stack(root, stack, portal):
    time.sleep(IDLE_SECONDS)
    total, proportional, by_name = root.memory()
    names = set(by_name)
    assert {"postgres", "redis-server"} <= names and any(n.startswith("meltybase") for n in names), \
        f"the stack is not complete inside the root: {sorted(names)}"
    detail = ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in sorted(by_name.items(), key=lambda item: -item[1]))
    figure("idle RSS (MB)", f"{total / 1024:.0f} ({detail})")
    figure("idle PSS (MB)", f"{proportional / 1024:.0f}")


def test_verify_release_names_a_modified_plugin(root, package):
    """A second copy of the package with one byte of a plugin changed."""
    result = subprocess.run(["unzip", "-q", str(package), "-d", str(root.host_path("/opt/modified"))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    folder = f"/opt/modified/{package.name.removesuffix('.zip')}"
    plugin = root.host_path(f"{folder}/libDatabasePlugin.so")
    data = bytearray(plugin.read_bytes())
    data[len(data) // 2] ^= 0x01
    plugin.write_bytes(bytes(data))
    refused = root.run(["./meltybase", "verify-release", "."], cwd=folder, timeout=120)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, f"verify-release accepted a modified plugin:\n{output}"
    assert "libDatabasePlugin.so" in output, f"verify-release does not name the modified file:\n{output}"
