"""Hardening regressions (issue 10), each against the real `meltybase serve` binary.

One kernel is shaped like the repository's own plugins.toml: a portal with both example
plugins beside the Database plugin and the Vault, an initialized instance whose admin
has TOTP. Every test here failed on the code before the hardening: a request that ended
the kernel process, SQL spliced through a cast, an admin token without its second
factor reading portal rows, the example plugin minting service_role tokens, relaying
vault reads and fetching loopback URLs, NUL bytes that broke the audit chain, unthrottled
password and TOTP guesses, unbounded prepared statements, an audit row per refused
login, unbounded WebSocket queues, the OpenAPI description showing what a role may not
use, a Redis password ignored, socket folders in /tmp, and garbage in a log line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from meltybase_kernel import DATABASE_AND_VAULT_TOML, MeltyBaseKernel, free_port, kernel_binary
from instance_setup import next_totp, set_up_instance

EMAIL = "root@example.com"
PASSWORD = "correct horse battery staple"
PORTAL = "hx"
MASTER_KEY = secrets.token_hex(32)

# Two REST connections per portal, so the prepared-statement test fills each of them.
PLUGINS_TOML = DATABASE_AND_VAULT_TOML + "\n[plugins.database.config]\npool_size = 2\n"


def payload(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Instance:
    """The module's kernel, its admin tokens (aal2 and password-only) and portal keys."""

    def __init__(self, kernel: MeltyBaseKernel):
        self.kernel = kernel
        self.url = kernel.url
        admin = set_up_instance(kernel, EMAIL, PASSWORD)
        self.totp_secret, self.step = admin["secret"], admin["step"]
        self.aal2 = admin["pair"]["access_token"]
        assert payload(self.aal2)["aal"] == "aal2"
        # A later password-only sign-in of the same admin: aal1, mfa_required.
        password_only = self.post("/v1/admin/login", {"email": EMAIL, "password": PASSWORD}).json()
        assert password_only["aal"] == "aal1" and password_only["mfa_required"] is True, password_only
        self.aal1 = password_only["access_token"]
        created = self.post("/v1/hub/portals", {"name": PORTAL, "plugins": ["echo-c", "echo-swift", "database", "vault"]}, self.aal2)
        assert created.status_code in (200, 201), created.text
        keys = created.json()
        self.anon = keys.get("anon_key") or keys["keys"]["anon"]
        self.service = keys.get("service_role_key") or keys["keys"]["service_role"]
        deadline = time.monotonic() + 30
        while self.get(f"/p/{PORTAL}/rest/v1/", key=self.service).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.1)

    def post(self, path: str, body, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.url + path, json=body, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, key: str | None = None, token: str | None = None, headers: dict | None = None, **kwargs) -> requests.Response:
        all_headers = dict(headers or {})
        if key:
            all_headers["apikey"] = key
        if token or key:
            all_headers["authorization"] = f"Bearer {token or key}"
        return requests.get(self.url + path, headers=all_headers, timeout=60, **kwargs)

    def sql(self, query: str) -> dict:
        response = requests.post(f"{self.url}/p/{PORTAL}/sql/v1/query", json={"query": query}, timeout=60,
                                 headers={"apikey": self.service, "authorization": f"Bearer {self.service}"})
        assert response.status_code == 200, response.text
        return response.json()

    def rest(self, method: str, path: str, key: str | None = None, **kwargs) -> requests.Response:
        key = key or self.service
        headers = {"apikey": key, "authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}/p/{PORTAL}/rest/v1{path}", headers=headers, timeout=60, **kwargs)

    def alive(self) -> bool:
        return self.kernel.process.poll() is None and requests.get(self.url + "/v1/system/status", timeout=10).status_code == 200

    def wait_rest(self, path: str, key: str | None = None) -> None:
        deadline = time.monotonic() + 15
        while self.rest("GET", path, key=key).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def instance():
    kernel = MeltyBaseKernel(PLUGINS_TOML, env={"MELTYBASE_MASTER_KEY": MASTER_KEY})
    try:
        yield Instance(kernel)
        assert "Fatal error" not in kernel.log_text(), kernel.log_text()[-4000:]
        assert kernel.process.poll() is None, "the kernel died during the module"
    finally:
        code = kernel.stop()
        if code in (0, -15):
            kernel.cleanup()


@pytest.fixture(scope="module")
def table(instance):
    instance.sql("create table items (id serial primary key, name text, price numeric(10,2) default 1.5);"
                 "insert into items (name) select 'item ' || g from generate_series(1, 5) g;"
                 "grant select on items to anon;")
    instance.wait_rest("/items")
    return "items"


# 1. A Range header overflowed `end - start + 1` and trapped: the whole kernel went down.
@pytest.mark.parametrize("header", ["0-9223372036854775807", "items=0-9223372036854775807", "9223372036854775807-9223372036854775807",
                                    "9223372036854775806-9223372036854775807", "0-99999999999999999999999", "-5", "5-2"])
def test_hostile_range_headers_are_answered_and_the_kernel_stays_up(instance, table, header):
    response = instance.rest("GET", f"/{table}?select=id", headers={"range": header})
    assert response.status_code in (200, 206, 416), response.text
    assert instance.alive()


@pytest.mark.parametrize("query", ["limit=9223372036854775807", "offset=9223372036854775807", "limit=99999999999999999999",
                                   "offset=-1", "limit=1&offset=9223372036854775806"])
def test_hostile_limits_and_offsets(instance, table, query):
    response = instance.rest("GET", f"/{table}?select=id&{query}", headers={"prefer": "count=exact"})
    assert response.status_code in (200, 206, 400, 416), response.text
    assert response.headers.get("content-type", "").startswith("application/json")
    assert instance.alive()


# 2. Two unnamed arguments (or pgcrypto in public) trapped in Dictionary(uniqueKeysWithValues:).
def test_openapi_survives_unnamed_arguments_and_extensions(instance, table):
    instance.sql("create function add_two(int, int) returns int language sql as 'select $1 + $2';"
                 "create function add_two(a text, b text) returns text language sql as 'select a || b';"
                 # pgcrypto's shape (portals keep the real one in the `extensions` schema, out
                 # of the API): overloads whose arguments have no names.
                 "create function digest(bytea, text) returns bytea language sql as 'select $1';"
                 "create function digest(text, text) returns bytea language sql as 'select convert_to($1, ''UTF8'')';")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = instance.get(f"/p/{PORTAL}/rest/v1/", key=instance.service)
        assert response.status_code == 200, response.text
        if "/rpc/add_two" in response.json()["paths"]:
            break
        time.sleep(0.2)
    assert "/rpc/add_two" in response.json()["paths"]
    assert "/rpc/digest" in response.json()["paths"]   # overloaded with unnamed arguments
    assert instance.alive()


# 3. `::` took any text with spaces: a select list could splice a UNION over pg_roles.
@pytest.mark.parametrize("select", [
    "rolname::text AS rolname FROM pg_roles AS t0 UNION ALL SELECT NULL",
    "id::text FROM pg_roles--",
    "id::int); select 1; --",
    "id::text\nFROM pg_roles",
    "id::\"text\"",
    "id::text[] union select 1",
])
def test_casts_cannot_splice_sql(instance, table, select):
    response = instance.rest("GET", f"/{table}", key=instance.anon, params={"select": select})
    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body, dict) and body["code"] == "PGRST100", body   # an error, never rows of pg_roles


@pytest.mark.parametrize("select,expected", [
    ("id::text", "1"), ("price::numeric", 1.5), ("price::double precision", 1.5), ("id::pg_catalog.int8", 1), ("name::varchar", "item 1"),
])
def test_honest_casts_still_work(instance, table, select, expected):
    response = instance.rest("GET", f"/{table}?order=id&limit=1", params={"select": select})
    assert response.status_code == 200, response.text
    if expected is not None:
        assert list(response.json()[0].values())[0] == expected


# 4. An admin token on /p/** was checked for signature and expiry only.
def test_password_only_admin_token_cannot_read_portal_data(instance, table):
    refused = instance.get(f"/p/{PORTAL}/rest/v1/{table}", token=instance.aal1)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "aal2_required"
    vault = instance.get(f"/p/{PORTAL}/vault/v1/secrets", token=instance.aal1)
    assert vault.status_code == 403 and vault.json()["code"] == "aal2_required", vault.text
    granted = instance.get(f"/p/{PORTAL}/rest/v1/{table}", token=instance.aal2)
    assert granted.status_code == 200 and len(granted.json()) == 5, granted.text


def test_signed_out_admin_token_is_refused_on_portal_routes(instance, table):
    code, instance.step = next_totp(instance.totp_secret, after_step=instance.step)
    pair = instance.post("/v1/admin/login", {"email": EMAIL, "password": PASSWORD}).json()
    stepped = instance.post("/v1/admin/mfa/challenge", {"code": code}, pair["access_token"])
    assert stepped.status_code == 200, stepped.text
    token = stepped.json()["access_token"]
    assert instance.get(f"/p/{PORTAL}/rest/v1/{table}", token=token).status_code == 200
    out = instance.post("/v1/admin/logout", {}, token)
    assert out.status_code in (200, 204), out.text
    after = instance.get(f"/p/{PORTAL}/rest/v1/{table}", token=token)
    assert after.status_code == 401, after.text
    assert after.json()["code"] == "admin_session_ended"


# 5. The example plugin signed any claims, relayed vault reads and fetched any URL.
def test_example_plugin_cannot_mint_service_role_tokens(instance):
    anonymous = requests.post(f"{instance.url}/p/{PORTAL}/echo-swift/sign", json={"role": "service_role", "sub": "x"}, timeout=30)
    assert anonymous.status_code == 403, anonymous.text
    with_key = requests.post(f"{instance.url}/p/{PORTAL}/echo-swift/sign", json={"role": "service_role", "sub": "x"}, timeout=30,
                             headers={"authorization": f"Bearer {instance.service}"})
    assert with_key.status_code == 403 and with_key.json()["code"] == "sign_refused", with_key.text
    forever = requests.post(f"{instance.url}/p/{PORTAL}/echo-swift/sign", json={"role": "authenticated", "sub": "u1", "exp": 4102444800},
                            timeout=30, headers={"authorization": f"Bearer {instance.service}"})
    assert forever.status_code == 403, forever.text
    user = requests.post(f"{instance.url}/p/{PORTAL}/echo-swift/sign", json={"role": "authenticated", "sub": "u1"}, timeout=30,
                         headers={"authorization": f"Bearer {instance.service}"})
    assert user.status_code == 200, user.text
    assert payload(user.json()["token"])["role"] == "authenticated"


def test_example_plugin_relays_vault_calls_with_the_callers_own_rights(instance):
    created = requests.post(f"{instance.url}/p/{PORTAL}/vault/v1/secrets", json={"name": "STRIPE_KEY", "value": "sk_test_relay"}, timeout=30,
                            headers={"authorization": f"Bearer {instance.service}"})
    assert created.status_code in (200, 201), created.text
    relay = f"{instance.url}/p/{PORTAL}/echo-swift/call?service=vault&method=get"
    anonymous = requests.post(relay, json={"name": "STRIPE_KEY"}, timeout=30)
    assert anonymous.status_code == 403 and "sk_test_relay" not in anonymous.text, anonymous.text
    anon_key = requests.post(relay, json={"name": "STRIPE_KEY"}, timeout=30, headers={"authorization": f"Bearer {instance.anon}"})
    assert anon_key.status_code == 403 and "sk_test_relay" not in anon_key.text, anon_key.text
    forged = requests.post(relay, json={"name": "STRIPE_KEY", "caller": {"kind": "portal", "role": "service_role"}}, timeout=30,
                           headers={"authorization": f"Bearer {instance.anon}"})
    assert forged.status_code == 403 and "sk_test_relay" not in forged.text, forged.text
    service = requests.post(relay, json={"name": "STRIPE_KEY"}, timeout=30, headers={"authorization": f"Bearer {instance.service}"})
    assert service.status_code == 200 and service.json()["value"] == "sk_test_relay", service.text


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/v1/system/status", "http://localhost:{port}/v1/system/status",
                                    "http://169.254.169.254/latest/meta-data/", "http://[::1]:{port}/", "http://10.0.0.1/",
                                    "http://0.0.0.0:{port}/", "http://[::ffff:127.0.0.1]:{port}/"])
def test_example_plugin_cannot_fetch_private_addresses(instance, target):
    url = target.format(port=instance.kernel.port)
    response = requests.get(f"{instance.url}/p/{PORTAL}/echo-swift/fetch", params={"url": url}, timeout=60)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "egress_refused"
    assert "pulse" not in response.text


# 6. libpq cut text at NUL: the login lookup, the lockout and the audit chain disagreed.
def test_nul_in_admin_login_is_refused_and_the_audit_chain_stays_intact(instance):
    response = instance.post("/v1/admin/login", {"email": EMAIL + "\u0000xyz", "password": "wrong password here"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_field"
    verify = instance.get("/v1/audit/verify", token=instance.aal2)
    assert verify.status_code == 200 and verify.json()["ok"] is True, verify.text


@pytest.mark.parametrize("path", ["/items?name=eq.a%00b", "/items%00", "/items?select=id%00name"])
def test_nul_in_rest_urls_is_a_400(instance, table, path):
    response = instance.rest("GET", path)
    assert response.status_code == 400, response.text
    assert response.json()["code"] in ("nul_byte", "PGRST100")


def test_nul_in_bodies_is_a_400(instance, table):
    inserted = instance.rest("POST", "/items", json={"name": "a\u0000b"})
    assert inserted.status_code == 400, inserted.text
    signup = requests.post(f"{instance.url}/p/{PORTAL}/auth/v1/signup", json={"email": "nul\u0000@example.com", "password": "a long passphrase"},
                           headers={"apikey": instance.anon}, timeout=30)
    assert signup.status_code == 400, signup.text
    sql = requests.post(f"{instance.url}/p/{PORTAL}/sql/v1/query", json={"query": "select '\u0000'"}, timeout=30,
                        headers={"authorization": f"Bearer {instance.service}"})
    assert sql.status_code == 400, sql.text
    assert instance.rest("GET", "/items?select=id").status_code == 200


def test_insert_of_an_empty_object_uses_the_defaults(instance, table):
    # Found by schemathesis: {} bound a parameter that DEFAULT VALUES does not take (a 503).
    response = instance.rest("POST", f"/{table}", json={}, headers={"prefer": "return=representation"})
    assert response.status_code == 201, response.text
    assert response.json()[0]["price"] == 1.5


def test_sql_console_state_does_not_outlive_its_request(instance):
    # Found by schemathesis: `set role anon` stuck to the pooled connection for later callers.
    for statement in ("set role anon", "set search_path to pg_catalog", "begin", "set statement_timeout = 1"):
        instance.sql(statement)
        for _ in range(3):   # every connection of the pool
            row = instance.sql("select current_user, current_setting('search_path'), current_setting('statement_timeout')")["rows"][0]
            assert row[0] != "anon" and row[1] != "pg_catalog" and row[2] != "1ms", (statement, row)


# 7. Portal users' password and TOTP guesses were not throttled.
def test_password_guesses_are_throttled(instance):
    email = f"guess-{uuid.uuid4().hex[:8]}@example.com"
    headers = {"apikey": instance.anon}
    signed = requests.post(f"{instance.url}/p/{PORTAL}/auth/v1/signup", json={"email": email, "password": "a long passphrase"}, headers=headers, timeout=30)
    assert signed.status_code == 200, signed.text
    statuses = []
    for _ in range(14):
        attempt = requests.post(f"{instance.url}/p/{PORTAL}/auth/v1/token?grant_type=password", json={"email": email, "password": "wrong guess"},
                                headers=headers, timeout=60)
        statuses.append(attempt.status_code)
    assert statuses[:10] == [400] * 10, statuses
    assert statuses[-1] == 429, statuses
    assert attempt.json()["error_code"] == "over_request_rate_limit"
    assert int(attempt.headers["retry-after"]) > 0
    # Locked: even the right password waits.
    right = requests.post(f"{instance.url}/p/{PORTAL}/auth/v1/token?grant_type=password", json={"email": email, "password": "a long passphrase"},
                          headers=headers, timeout=60)
    assert right.status_code == 429, right.text


def test_totp_guesses_are_throttled(instance):
    import pyotp

    email = f"mfa-{uuid.uuid4().hex[:8]}@example.com"
    base = f"{instance.url}/p/{PORTAL}/auth/v1"
    session = requests.post(f"{base}/signup", json={"email": email, "password": "a long passphrase"}, headers={"apikey": instance.anon}, timeout=30).json()
    user = {"apikey": instance.anon, "authorization": f"Bearer {session['access_token']}"}
    factor = requests.post(f"{base}/factors", json={"factor_type": "totp"}, headers=user, timeout=30).json()
    challenge = requests.post(f"{base}/factors/{factor['id']}/challenge", headers=user, timeout=30).json()
    right = pyotp.TOTP(factor["totp"]["secret"]).now()
    wrong = f"{(int(right) + 500000) % 1000000:06d}"
    statuses = [requests.post(f"{base}/factors/{factor['id']}/verify", json={"challenge_id": challenge["id"], "code": wrong}, headers=user, timeout=30).status_code
                for _ in range(7)]
    assert statuses[:5] == [422] * 5, statuses
    assert statuses[-1] == 429, statuses


# 8. Prepared statements were kept per distinct SQL text for ever.
def test_prepared_statements_per_connection_are_bounded(instance, table):
    instance.sql("create function prepared_count() returns bigint language sql security definer as "
                 "'select count(*) from pg_prepared_statements';"
                 "grant execute on function prepared_count() to service_role;")
    instance.wait_rest("/rpc/prepared_count")
    with requests.Session() as session:
        session.headers.update({"apikey": instance.service, "authorization": f"Bearer {instance.service}"})
        for index in range(700):
            response = session.get(f"{instance.url}/p/{PORTAL}/rest/v1/{table}", params={"select": f"a{index}:id", "limit": "1"}, timeout=30)
            assert response.status_code == 200, response.text
        counts = [session.post(f"{instance.url}/p/{PORTAL}/rest/v1/rpc/prepared_count", json={}, timeout=30).json() for _ in range(8)]
    assert max(counts) <= 256, counts
    assert max(counts) > 20, counts   # the cache still works


# 14. GET /rest/v1/ showed every table and function, whatever the role's grants.
def test_openapi_shows_a_role_only_what_it_may_use(instance, table):
    instance.sql("create table staff_only (id int); revoke all on staff_only from anon, authenticated;"
                 "create table read_only (id int); revoke all on read_only from anon; grant select on read_only to anon;"
                 "create function staff_fn() returns int language sql as 'select 1';"
                 "revoke execute on function staff_fn() from public, anon, authenticated;"
                 "create function open_fn() returns int language sql as 'select 1'; grant execute on function open_fn() to anon;")
    instance.wait_rest("/staff_only")
    anon_paths = instance.get(f"/p/{PORTAL}/rest/v1/", key=instance.anon).json()["paths"]
    service_paths = instance.get(f"/p/{PORTAL}/rest/v1/", key=instance.service).json()["paths"]
    assert "/staff_only" in service_paths and "/rpc/staff_fn" in service_paths
    assert "/staff_only" not in anon_paths and "/rpc/staff_fn" not in anon_paths
    assert "/items" in anon_paths and "/rpc/open_fn" in anon_paths
    assert set(anon_paths["/read_only"]) == {"get"}   # select granted, no writes
    assert set(service_paths["/read_only"]) == {"get", "post", "patch", "delete"}


# 10. WebSocket queues were unbounded: a client that never reads grew the kernel.
def test_websocket_client_that_never_reads_is_closed(instance):
    sock = socket.create_connection(("127.0.0.1", instance.kernel.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /p/{PORTAL}/echo-swift/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload_bytes = os.urandom(1024 * 1024)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload_bytes[:4096])) * 256
    frame = bytes([0x82, 0xFF]) + len(masked).to_bytes(8, "big") + mask + masked
    closed = False
    sock.settimeout(5)
    try:
        for _ in range(64):   # 64 MiB echoed back at a client that reads nothing
            sock.sendall(frame)
    except OSError:
        closed = True
    if not closed:
        sock.settimeout(30)
        try:
            while sock.recv(65536):
                pass
            closed = True
        except OSError:
            closed = True
    sock.close()
    assert closed
    assert "slow consumer" in instance.kernel.log_text() or instance.alive()
    assert instance.alive()



def test_websocket_upgrade_after_a_request_on_the_same_connection_is_redirected(instance):
    """Only a connection's first request can upgrade (a proxy reusing backend connections
    sends later ones): the kernel answers 307 to the same address with Connection: close,
    and the upgrade succeeds on a new connection."""
    sock = socket.create_connection(("127.0.0.1", instance.kernel.port), timeout=30)
    sock.sendall(b"GET /v1/system/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"pulse" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (f"GET /p/{PORTAL}/echo-swift/ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    sock.sendall(upgrade)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, "the connection closed without an answer"
        answer += chunk
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 307"), answer
    assert f"location: /p/{PORTAL}/echo-swift/ws?x=1".encode() in head
    assert b"connection: close" in head
    sock.close()
    fresh = socket.create_connection(("127.0.0.1", instance.kernel.port), timeout=30)
    fresh.sendall(upgrade)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += fresh.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    fresh.close()

# 9. Every refused login appended a permanent audit row: flooding the login filled the log.
def test_login_flood_writes_a_bounded_number_of_audit_rows(instance):
    """Runs last in the module: it locks this client address for admin sign-ins."""
    before = instance.get("/v1/audit", token=instance.aal2, params={"action": "admin.login_failed", "limit": 500}).json()["entries"]
    statuses = [instance.post("/v1/admin/login", {"email": "nobody@example.com", "password": "wrong password, again"}).status_code for _ in range(60)]
    assert 429 in statuses, statuses
    after = instance.get("/v1/audit", token=instance.aal2, params={"action": "admin.login_failed", "limit": 500}).json()["entries"]
    written = len(after) - len(before)
    assert 1 <= written <= 8, written
    locked = [entry for entry in after if entry["details"].get("reason") == "account_locked"]
    assert locked, after[-3:]
    verify = instance.get("/v1/audit/verify", token=instance.aal2)
    assert verify.json()["ok"] is True, verify.text


# 11. A password in the Redis URL was parsed and ignored (no AUTH).
def test_redis_password_in_the_url_is_used(tmp_path):
    password = secrets.token_hex(12)
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kernel = None
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-p", str(port), "-a", password, "--no-auth-warning", "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        kernel = MeltyBaseKernel(f'[redis]\nurl = "redis://:{password}@127.0.0.1:{port}/0"\n'
                                 "[rate_limit]\nper_client = { rate = 1000, burst = 1000 }\n")
        for _ in range(3):
            assert requests.get(kernel.url + "/v1/system/status", timeout=10).status_code == 200
        keys = subprocess.run(["redis-cli", "-p", str(port), "-a", password, "--no-auth-warning", "--scan", "--pattern", "meltybase:*"],
                              capture_output=True, text=True).stdout.split()
        assert keys, "the kernel kept no rate-limit keys in Redis: AUTH was not sent"
        log = kernel.log_text()
        assert password not in log
        assert "NOAUTH" not in log
    finally:
        if kernel:
            kernel.stop()
            kernel.cleanup()
        redis.terminate()
        redis.wait()


def test_tls_redis_urls_are_refused_with_a_reason():
    password = secrets.token_hex(12)
    kernel = MeltyBaseKernel(f'[redis]\nurl = "rediss://:{password}@127.0.0.1:{free_port()}"\n')
    try:
        log = kernel.log_text()
        assert "TLS (rediss://) is not supported" in log, log[-3000:]
        assert password not in log
    finally:
        kernel.stop()
        kernel.cleanup()


# 12. Long data-dir paths put sockets in predictable names in /tmp.
def test_long_data_directory_uses_private_socket_folders(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    for parent in (tmp_path / ("d" * 60), deep):
        os.chmod(parent, 0o755)
    config = tmp_path / "plugins.toml"
    port = free_port()
    config.write_text(f'[kernel]\ndata_dir = "{deep / "data"}"\n[[listeners]]\nhost = "127.0.0.1"\nport = {port}\n')
    log_path = tmp_path / "kernel.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(kernel_binary()), "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   env={k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if requests.get(f"http://127.0.0.1:{port}/v1/system/status", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.25)
            text = log_path.read_text()
            sockets = re.findall(r"socket=(\S+)", text)
            assert sockets, text
            for path in sockets:
                folder = Path(path) if not path.endswith(".sock") else Path(path).parent
                assert folder.parent != Path("/tmp") and folder.parent != Path(tempfile_root()), path
                info = os.lstat(folder)
                assert stat.S_ISDIR(info.st_mode) and info.st_mode & 0o077 == 0, (path, oct(info.st_mode))
                parent = os.lstat(folder.parent)
                assert parent.st_mode & 0o022 == 0, (folder.parent, oct(parent.st_mode))
        finally:
            process.terminate()
            process.wait(60)


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()
