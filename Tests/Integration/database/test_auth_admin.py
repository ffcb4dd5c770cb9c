"""GoTrue's admin API (`/auth/v1/admin/*`) through supabase-py's `client.auth.admin` with
the service_role key: creating users (confirmed or not, metadata, role, id, imported Argon2id
and bcrypt hashes), listing them page by page, reading, updating (metadata merge, password,
email, bans), deleting (hard and soft) and their MFA factors. Then the refusals: every admin
route without the service role, and hostile input that must answer 4xx JSON, never 5xx."""

from __future__ import annotations

import base64
import datetime
import os
import uuid

import pyotp
import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from dbkit import describe, error_json, jwt_payload

PASSWORD = "Admin-made-7-password"


@pytest.fixture(scope="module")
def admin(portal):
    return portal.client(portal.service).auth.admin


def new_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def sign_in(portal, email: str, password: str = PASSWORD):
    return portal.auth("POST", "token", key=portal.anon, params={"grant_type": "password"},
                       json={"email": email, "password": password})


def signed_in(portal, email: str, password: str = PASSWORD) -> dict:
    response = sign_in(portal, email, password)
    assert response.status_code == 200, describe(response)
    return response.json()


def refresh(portal, token: str):
    return portal.auth("POST", "token", key=portal.anon, params={"grant_type": "refresh_token"},
                       json={"refresh_token": token})


def api_error(call) -> AuthApiError:
    with pytest.raises(AuthApiError) as caught:
        call()
    return caught.value


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def audit_entries(kernel, user_id: str) -> list[str]:
    """`action details` of the kernel's audit entries about one user (the system database)."""
    for database in kernel.superuser_sql("SELECT datname FROM pg_database WHERE NOT datistemplate").splitlines():
        if kernel.superuser_sql("SELECT to_regclass('meltybase.audit_log') IS NOT NULL", database) == "t":
            rows = kernel.superuser_sql(
                f"SELECT action || ' ' || details::text FROM meltybase.audit_log WHERE target = 'auth.users:{user_id}' ORDER BY seq",
                database)
            return rows.splitlines()
    raise AssertionError("no database holds meltybase.audit_log")


# --- create ------------------------------------------------------------------------------


def test_create_confirmed_user_with_metadata_then_sign_in(portal, admin, kernel):
    email = new_email("create")
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True,
                              "user_metadata": {"name": "Ada", "n": 1},
                              "app_metadata": {"plan": "pro"}}).user
    assert user.email == email
    assert user.email_confirmed_at is not None
    assert user.user_metadata == {"name": "Ada", "n": 1}
    assert user.app_metadata == {"provider": "email", "providers": ["email"], "plan": "pro"}
    assert user.role == "authenticated" and user.aud == "authenticated"
    session = signed_in(portal, email)
    claims = jwt_payload(session["access_token"])
    assert claims["sub"] == user.id
    assert claims["app_metadata"]["plan"] == "pro"
    assert claims["user_metadata"]["name"] == "Ada"
    # Audited without the password.
    entries = audit_entries(kernel, user.id)
    assert any(entry.startswith("auth.admin.user_created ") for entry in entries), entries
    assert all(PASSWORD not in entry for entry in entries)


def test_create_unconfirmed_user_with_role_and_id(admin):
    chosen = str(uuid.uuid4())
    email = new_email("custom")
    user = admin.create_user({"email": email, "password": PASSWORD, "role": "editor", "id": chosen}).user
    assert user.id == chosen
    assert user.role == "editor"
    assert user.email_confirmed_at is None
    fetched = admin.get_user_by_id(chosen).user
    assert fetched.id == chosen and fetched.email == email and fetched.role == "editor"


def test_a_user_cannot_be_given_the_service_role(portal, admin, kernel):
    """A user whose role were service_role would hold a key to the whole portal in every
    token; the admin API refuses it, and a row given it by hand still signs in as a user."""
    email = new_email("svc")
    error = api_error(lambda: admin.create_user({"email": email, "password": PASSWORD, "role": "service_role", "email_confirm": True}))
    assert error.status == 400 and "service_role" in error.message
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True}).user
    error = api_error(lambda: admin.update_user_by_id(user.id, {"role": " service_role "}))
    assert error.status == 400
    assert admin.get_user_by_id(user.id).user.role == "authenticated"
    assert portal.sql(f"update auth.users set role = 'service_role' where id = '{user.id}'")["command"] == "UPDATE 1"
    session = portal.client().auth.sign_in_with_password({"email": email, "password": PASSWORD}).session
    token = session.access_token
    assert jwt_payload(token)["role"] == "authenticated"
    listed = portal.auth("GET", "admin/users", token=token)
    assert listed.status_code in (401, 403), describe(listed)


def test_create_refusals(portal, admin):
    email = new_email("dupe")
    admin.create_user({"email": email, "password": PASSWORD})
    error = api_error(lambda: admin.create_user({"email": email.upper(), "password": PASSWORD}))
    assert error.status == 422 and error.code == "email_exists"
    with pytest.raises(AuthWeakPasswordError) as weak:
        admin.create_user({"email": new_email("weak"), "password": "short"})
    assert weak.value.status == 422 and weak.value.reasons == ["length"]
    chosen = str(uuid.uuid4())
    admin.create_user({"email": new_email("id1"), "id": chosen})
    error = api_error(lambda: admin.create_user({"email": new_email("id2"), "id": chosen}))
    assert error.status == 422 and error.code == "user_already_exists"
    for body, status in [
        ({"password": PASSWORD}, 400),
        ({"email": "not-an-email", "password": PASSWORD}, 400),
        ({"email": new_email("x"), "id": "not-a-uuid"}, 400),
        ({"email": new_email("x"), "id": "00000000-0000-0000-0000-000000000000"}, 400),
        ({"email": new_email("x"), "password": PASSWORD, "password_hash": "$2a$04$" + "a" * 53}, 400),
        ({"email": new_email("x"), "phone": "+15550100"}, 422),
    ]:
        response = portal.auth("POST", "admin/users", json=body)
        assert response.status_code == status, describe(response)
        assert error_json(response)["msg"]


def test_create_without_password_cannot_sign_in_until_one_is_set(portal, admin):
    email = new_email("nopass")
    user = admin.create_user({"email": email, "email_confirm": True}).user
    assert sign_in(portal, email, "").status_code == 400
    assert sign_in(portal, email, PASSWORD).status_code == 400
    admin.update_user_by_id(user.id, {"password": PASSWORD})
    assert sign_in(portal, email).status_code == 200


# --- imported password hashes ---------------------------------------------------------------


def argon2id_phc(password: str, *, memory: int = 19456, iterations: int = 2, lanes: int = 1) -> str:
    """An Argon2id PHC string from an independent implementation (OpenSSL via cryptography)."""
    salt = os.urandom(16)
    digest = Argon2id(salt=salt, length=32, iterations=iterations, lanes=lanes, memory_cost=memory).derive(password.encode())
    encode = lambda raw: base64.b64encode(raw).decode().rstrip("=")  # noqa: E731
    return f"$argon2id$v=19$m={memory},t={iterations},p={lanes}${encode(salt)}${encode(digest)}"


def test_create_with_an_argon2id_hash(portal, admin):
    phc = argon2id_phc("imported-Argon2-pass", memory=8192, iterations=3, lanes=2)
    email = new_email("argon")
    user = admin.create_user({"email": email, "password_hash": phc, "email_confirm": True}).user
    stored = portal.sql_rows(f"select encrypted_password from auth.users where id = '{user.id}'")[0][0]
    assert stored == phc
    assert sign_in(portal, email, "wrong-Argon2-pass").status_code == 400
    assert jwt_payload(signed_in(portal, email, "imported-Argon2-pass")["access_token"])["sub"] == user.id


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_create_with_a_bcrypt_hash_upgrades_it_at_sign_in(portal, admin, prefix):
    password = "imported-Bcrypt-pass"
    made = portal.sql_rows(f"select extensions.crypt('{password}', extensions.gen_salt('bf', 5))")[0][0]
    assert made.startswith("$2a$05$")
    hashed = prefix + made[4:]
    email = new_email("bcrypt")
    user = admin.create_user({"email": email, "password_hash": hashed, "email_confirm": True}).user
    assert portal.sql_rows(f"select encrypted_password from auth.users where id = '{user.id}'")[0][0] == hashed
    assert sign_in(portal, email, "wrong-Bcrypt-pass").status_code == 400
    assert jwt_payload(signed_in(portal, email, password)["access_token"])["sub"] == user.id
    # The first matching sign-in replaced the bcrypt hash by an Argon2id one; it still works.
    upgraded = portal.sql_rows(f"select encrypted_password from auth.users where id = '{user.id}'")[0][0]
    assert upgraded.startswith("$argon2id$"), upgraded
    assert sign_in(portal, email, password).status_code == 200


@pytest.mark.parametrize("hashed", [
    "plaintext-password",
    "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
    "$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$" + "A" * 43,
    "$argon2id$v=19$m=19456,t=99999999999,p=1$c29tZXNhbHRzb21lc2FsdA$" + "A" * 43,
    "$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$" + "A" * 43,
    "$2a$31$" + "a" * 53,
    "$2a$04$short",
    "$1$saltsalt$md5cryptnotsupported",
], ids=["plain", "argon2i", "huge-memory", "huge-time", "v16", "bcrypt-cost-31", "bcrypt-short", "md5crypt"])
def test_unsupported_password_hashes_are_refused(portal, hashed):
    response = portal.auth("POST", "admin/users", json={"email": new_email("hash"), "password_hash": hashed})
    assert response.status_code == 422, describe(response)
    body = error_json(response)
    assert body["error_code"] == "validation_failed" and "password_hash" in body["msg"]


# --- list, get ------------------------------------------------------------------------------


def test_list_users_pages_and_totals(portal, admin):
    tag = uuid.uuid4().hex[:8]
    made = [admin.create_user({"email": f"page{i}-{tag}@example.com", "password": PASSWORD}).user.id for i in range(5)]
    total = int(portal.sql_rows("select count(*) from auth.users")[0][0])
    first = admin.list_users(page=1, per_page=2)
    assert len(first) == 2
    seen: list[str] = []
    page = 1
    while True:
        users = admin.list_users(page=page, per_page=2)
        if not users:
            break
        seen += [user.id for user in users]
        page += 1
    assert len(seen) == total == len(set(seen))
    assert set(made) <= set(seen)
    # Newest first: the last one made leads among ours.
    ours = [user_id for user_id in seen if user_id in made]
    assert ours == list(reversed(made))

    response = portal.auth("GET", "admin/users", params={"page": 1, "per_page": 2, "filter": tag})
    assert response.status_code == 200, describe(response)
    assert response.headers["x-total-count"] == "5"
    body = response.json()
    assert body["aud"] == "authenticated" and len(body["users"]) == 2
    link = response.headers["link"]
    assert f'/p/{portal.name}/auth/v1/admin/users?page=2&per_page=2' in link and 'rel="next"' in link
    assert "page=3&per_page=2" in link and 'rel="last"' in link
    last = portal.auth("GET", "admin/users", params={"page": 3, "per_page": 2, "filter": tag})
    assert len(last.json()["users"]) == 1 and 'rel="next"' not in last.headers["link"]
    # Defaults: page 1, 50 per page.
    default = portal.auth("GET", "admin/users")
    assert default.status_code == 200 and len(default.json()["users"]) == min(total, 50)


def test_get_user(portal, admin):
    email = new_email("get")
    made = admin.create_user({"email": email, "password": PASSWORD}).user
    fetched = admin.get_user_by_id(made.id).user
    assert fetched.id == made.id and fetched.email == email and fetched.factors in (None, [])
    error = api_error(lambda: admin.get_user_by_id(str(uuid.uuid4())))
    assert error.status == 404 and error.code == "user_not_found"


# --- update ---------------------------------------------------------------------------------


def test_update_merges_metadata_as_gotrue(admin):
    user = admin.create_user({"email": new_email("merge"), "password": PASSWORD,
                              "user_metadata": {"a": 1, "b": 2, "nested": {"x": 1}}, "app_metadata": {"x": 1}}).user
    updated = admin.update_user_by_id(user.id, {"user_metadata": {"b": None, "c": 3, "nested": {"y": 2}},
                                                "app_metadata": {"x": None, "y": 2}}).user
    # Top-level keys merge; null deletes a key; nested objects are replaced, not merged.
    assert updated.user_metadata == {"a": 1, "c": 3, "nested": {"y": 2}}
    assert updated.app_metadata == {"provider": "email", "providers": ["email"], "y": 2}
    untouched = admin.update_user_by_id(user.id, {"role": "reviewer"}).user
    assert untouched.user_metadata == updated.user_metadata and untouched.role == "reviewer"


def test_update_password_email_and_confirmation(portal, admin, kernel):
    email = new_email("upd")
    user = admin.create_user({"email": email, "password": PASSWORD}).user
    assert user.email_confirmed_at is None
    confirmed = admin.update_user_by_id(user.id, {"email_confirm": True}).user
    assert confirmed.email_confirmed_at is not None
    admin.update_user_by_id(user.id, {"password": "Second-7-password"})
    assert sign_in(portal, email, PASSWORD).status_code == 400
    assert sign_in(portal, email, "Second-7-password").status_code == 200
    moved = new_email("moved")
    updated = admin.update_user_by_id(user.id, {"email": moved}).user
    assert updated.email == moved and updated.email_confirmed_at is not None
    assert sign_in(portal, email, "Second-7-password").status_code == 400
    assert sign_in(portal, moved, "Second-7-password").status_code == 200
    with pytest.raises(AuthWeakPasswordError) as weak:
        admin.update_user_by_id(user.id, {"password": "short"})
    assert weak.value.status == 422 and weak.value.code == "weak_password"
    other = admin.create_user({"email": new_email("taken"), "password": PASSWORD}).user
    error = api_error(lambda: admin.update_user_by_id(other.id, {"email": moved}))
    assert error.status == 422 and error.code == "email_exists"
    error = api_error(lambda: admin.update_user_by_id(str(uuid.uuid4()), {"role": "x"}))
    assert error.status == 404 and error.code == "user_not_found"
    entries = audit_entries(kernel, user.id)
    assert sum(entry.startswith("auth.admin.user_updated ") for entry in entries) >= 2, entries
    assert all("Second-7-password" not in entry and "$argon2id$" not in entry for entry in entries)


def test_ban_refuses_sign_in_and_refresh_until_unbanned(portal, admin):
    email = new_email("ban")
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True}).user
    session = signed_in(portal, email)
    banned = admin.update_user_by_id(user.id, {"ban_duration": "1h30m"}).user
    assert banned.banned_until is not None
    remaining = parse_time(banned.banned_until) - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=80) < remaining < datetime.timedelta(minutes=100), remaining
    assert sign_in(portal, email).status_code == 400
    refused = refresh(portal, session["refresh_token"])
    assert refused.status_code == 400, describe(refused)
    assert error_json(refused)["error_code"] == "user_banned"
    unbanned = admin.update_user_by_id(user.id, {"ban_duration": "none"}).user
    assert unbanned.banned_until is None
    fresh = signed_in(portal, email)
    # The ban ended the sessions it found: the old refresh token stays dead.
    assert refresh(portal, session["refresh_token"]).status_code == 400
    assert refresh(portal, fresh["refresh_token"]).status_code == 200


@pytest.mark.parametrize("duration,banned", [
    ("24h", True), ("90s", True), ("876000h", True), ("1.5h", True), ("2562047h", True),
    ("-1h", False), ("0", False), ("0s", False), ("none", False),
])
def test_ban_durations_go_accepts(portal, admin, duration, banned):
    email = new_email("dur")
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True, "ban_duration": "24h"}).user
    assert user.banned_until is not None
    updated = admin.update_user_by_id(user.id, {"ban_duration": duration}).user
    now = datetime.datetime.now(datetime.timezone.utc)
    assert (updated.banned_until is not None and parse_time(updated.banned_until) > now) == banned, updated.banned_until
    assert (sign_in(portal, email).status_code == 400) == banned


@pytest.mark.parametrize("duration", [
    "9999999999999999h", "2562048h", "9223372036854775808ns", "24", "1x", "h", ".h", "1.2.3h", "1hh", "--1h", "+-1h",
    " 24h", "1h ", "24H", "1e3s", "x" * 5000,
])
def test_ban_durations_go_refuses_are_400(portal, admin, duration):
    user = admin.create_user({"email": new_email("baddur"), "password": PASSWORD}).user
    response = portal.auth("PUT", f"admin/users/{user.id}", json={"ban_duration": duration})
    assert response.status_code == 400, describe(response)
    assert error_json(response)["error_code"] == "validation_failed"
    assert admin.get_user_by_id(user.id).user.banned_until is None


# --- delete ---------------------------------------------------------------------------------


def test_hard_delete_ends_the_user_and_its_sessions(portal, admin, kernel):
    email = new_email("hard")
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True}).user
    session = signed_in(portal, email)
    assert admin.delete_user(user.id) is None
    error = api_error(lambda: admin.get_user_by_id(user.id))
    assert error.status == 404
    assert sign_in(portal, email).status_code == 400
    assert refresh(portal, session["refresh_token"]).status_code == 400
    assert portal.sql_rows(f"select count(*) from auth.sessions where user_id = '{user.id}'")[0][0] in (0, "0")
    error = api_error(lambda: admin.delete_user(user.id))
    assert error.status == 404 and error.code == "user_not_found"
    assert any(entry.startswith("auth.admin.user_deleted ") for entry in audit_entries(kernel, user.id))


def test_soft_delete_keeps_an_obfuscated_row(portal, admin):
    email = new_email("soft")
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True}).user
    session = signed_in(portal, email)
    assert admin.delete_user(user.id, should_soft_delete=True) is None
    kept = admin.get_user_by_id(user.id).user
    assert kept.deleted_at is not None
    assert kept.email != email and "@" not in (kept.email or "")
    assert sign_in(portal, email).status_code == 400
    assert refresh(portal, session["refresh_token"]).status_code == 400
    assert portal.sql_rows(f"select encrypted_password is null from auth.users where id = '{user.id}'")[0][0] in (True, "t", "true")
    # Deleting it again (soft) changes nothing; the address is free for a new user.
    admin.delete_user(user.id, should_soft_delete=True)
    assert admin.get_user_by_id(user.id).user.email == kept.email
    again = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True}).user
    assert again.id != user.id and sign_in(portal, email).status_code == 200


def test_delete_refused_while_another_table_references_the_user(portal, admin, kernel):
    # As in Supabase projects, a profile row points at its user (the superuser makes the
    # foreign key: the portal owner may not reference auth.users).
    database = f"mb_{portal.name}"
    kernel.superuser_sql("create table if not exists public.profiles (id uuid primary key references auth.users(id))", database)
    user = admin.create_user({"email": new_email("ref"), "password": PASSWORD}).user
    kernel.superuser_sql(f"insert into public.profiles values ('{user.id}')", database)
    response = portal.auth("DELETE", f"admin/users/{user.id}", json={"should_soft_delete": False})
    assert response.status_code == 409, describe(response)
    assert "profiles" in error_json(response)["msg"]
    assert admin.get_user_by_id(user.id).user.id == user.id


# --- factors --------------------------------------------------------------------------------


def test_mfa_list_and_delete_factors(portal, admin):
    email = new_email("mfa")
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True}).user
    client = portal.client(portal.anon)
    client.auth.sign_in_with_password({"email": email, "password": PASSWORD})
    spare = client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "spare"})
    enrolled = client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "phone"})
    challenge = client.auth.mfa.challenge({"factor_id": enrolled.id})
    verified = client.auth.mfa.verify({"factor_id": enrolled.id, "challenge_id": challenge.id,
                                       "code": pyotp.TOTP(enrolled.totp.secret).now()})
    assert jwt_payload(verified.access_token)["aal"] == "aal2"

    factors = admin.mfa.list_factors({"user_id": user.id})
    assert {(f.id, f.status) for f in factors} == {(spare.id, "unverified"), (enrolled.id, "verified")}
    assert admin.mfa.delete_factor({"user_id": user.id, "id": enrolled.id}).id == enrolled.id
    assert [f.id for f in admin.mfa.list_factors({"user_id": user.id})] == [spare.id]
    # The sessions the factor raised are back at aal1: a refresh says so.
    refreshed = refresh(portal, verified.refresh_token)
    assert refreshed.status_code == 200, describe(refreshed)
    assert jwt_payload(refreshed.json()["access_token"])["aal"] == "aal1"

    error = api_error(lambda: admin.mfa.delete_factor({"user_id": user.id, "id": enrolled.id}))
    assert error.status == 404 and error.code == "mfa_factor_not_found"
    other = admin.create_user({"email": new_email("mfa2"), "password": PASSWORD}).user
    error = api_error(lambda: admin.mfa.delete_factor({"user_id": other.id, "id": spare.id}))
    assert error.status == 404
    error = api_error(lambda: admin.mfa.list_factors({"user_id": str(uuid.uuid4())}))
    assert error.status == 404 and error.code == "user_not_found"


# --- refusals -------------------------------------------------------------------------------

SOME_ID = "3f2a6c1e-1b2d-4c3e-9f00-0123456789ab"
ROUTES = [
    ("GET", "admin/users", None),
    ("POST", "admin/users", {"email": "x@example.com", "password": PASSWORD}),
    ("GET", f"admin/users/{SOME_ID}", None),
    ("PUT", f"admin/users/{SOME_ID}", {"role": "service_role"}),
    ("DELETE", f"admin/users/{SOME_ID}", {"should_soft_delete": False}),
    ("GET", f"admin/users/{SOME_ID}/factors", None),
    ("DELETE", f"admin/users/{SOME_ID}/factors/{SOME_ID}", None),
]


@pytest.fixture(scope="module")
def user_token(portal, admin):
    email = new_email("plain")
    admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True})
    return signed_in(portal, email)["access_token"]


@pytest.mark.parametrize("method,path,body", ROUTES, ids=[f"{m} {p.split('/', 2)[-1][:20]}" for m, p, _ in ROUTES])
def test_admin_routes_need_the_service_role(portal, user_token, method, path, body):
    url = f"{portal.auth_url}/{path}"
    nothing = portal.http.request(method, url, json=body)
    assert nothing.status_code == 401, describe(nothing)
    error_json(nothing)
    for token in (portal.anon, user_token):
        refused = portal.request(method, url, key=portal.anon, token=token, json=body)
        assert refused.status_code == 403, describe(refused)
        assert error_json(refused)["error_code"] == "not_admin"
    # Nothing was created.
    assert portal.sql_rows("select count(*) from auth.users where email = 'x@example.com'")[0][0] in (0, "0")


HOSTILE = [
    ("GET", "admin/users", {"per_page": str(10**30)}, None),
    ("GET", "admin/users", {"per_page": "1001"}, None),
    ("GET", "admin/users", {"per_page": "-5"}, None),
    ("GET", "admin/users", {"page": "-1"}, None),
    ("GET", "admin/users", {"page": str(2**64)}, None),
    ("GET", "admin/users", {"page": "1e3"}, None),
    ("GET", "admin/users", {"page": "99999999999"}, None),
    ("GET", "admin/users", {"sort": "email"}, None),
    ("GET", "admin/users", {"filter": "x" * 300}, None),
    ("GET", "admin/users/not-a-uuid", None, None),
    ("GET", "admin/users/" + "9" * 300, None, None),
    ("PUT", "admin/users/'%3B drop table auth.users--", None, {"role": "x"}),
    ("DELETE", "admin/users/00000000-0000-0000-0000-00000000000g", None, {}),
    ("GET", f"admin/users/{SOME_ID}", None, None),
    ("GET", "admin/users/not-a-uuid/factors", None, None),
    ("DELETE", f"admin/users/{SOME_ID}/factors/not-a-uuid", None, None),
    ("PATCH", "admin/users", None, {}),
    ("GET", "admin/audit", None, None),
    ("POST", "admin/users", None, {"email": 5}),
    ("POST", "admin/users", None, {"email": ["a@b.co"]}),
    ("POST", "admin/users", None, {"email": "nul\u0000@example.com", "password": PASSWORD}),
    ("POST", "admin/users", None, {"email": "rtl\u202e@example.com", "password": PASSWORD}),
    ("POST", "admin/users", None, {"email": "a" * 5000 + "@example.com", "password": PASSWORD}),
    ("POST", "admin/users", None, {"email": "meta1@example.com", "user_metadata": {"k": "v\u0000"}}),
    ("POST", "admin/users", None, {"email": "meta2@example.com", "user_metadata": {"k\u0000": 1}}),
    ("POST", "admin/users", None, {"email": "meta3@example.com", "user_metadata": "text"}),
    ("POST", "admin/users", None, {"email": "meta4@example.com", "app_metadata": [1, 2]}),
    ("POST", "admin/users", None, {"email": "meta5@example.com", "email_confirm": "yes"}),
    ("POST", "admin/users", None, {"email": "meta6@example.com", "password": 12345678}),
    ("POST", "admin/users", None, {"email": "meta7@example.com", "ban_duration": 24}),
    ("POST", "admin/users", None, {"email": "meta8@example.com", "ban_duration": "9999999999999999h"}),
    ("POST", "admin/users", None, {"email": "meta9@example.com", "role": "r" * 200}),
    ("POST", "admin/users", None, {"email": "meta10@example.com", "role": "bad\u0000role"}),
    ("POST", "admin/users", None, {"email": "meta11@example.com", "id": 42}),
    ("POST", "admin/users", None, {"email": "meta12@example.com", "password_hash": "x" * 5000}),
    ("POST", "admin/users", None, {"email": "meta13@example.com", "password": "p" * 5000}),
    ("POST", "admin/users", None, [1, 2, 3]),
    ("PUT", f"admin/users/{SOME_ID}", None, {"user_metadata": {"k": "\u0000"}}),
    ("PUT", f"admin/users/{SOME_ID}", None, {"email_confirm": 3}),
    ("DELETE", f"admin/users/{SOME_ID}", None, {"should_soft_delete": "yes"}),
]


def test_hostile_input_is_4xx_json(portal, admin):
    target = admin.create_user({"email": new_email("target"), "password": PASSWORD}).user
    cases = HOSTILE + [
        ("PUT", f"admin/users/{target.id}", None, {"user_metadata": {"k": "v\u0000"}}),
        ("PUT", f"admin/users/{target.id}", None, {"app_metadata": {"\u0000": 1}}),
        ("PUT", f"admin/users/{target.id}", None, {"email": "bad\u0000@example.com"}),
        ("PUT", f"admin/users/{target.id}", None, {"ban_duration": "9999999999999999h"}),
        ("PUT", f"admin/users/{target.id}", None, {"user_metadata": 7}),
        ("PUT", f"admin/users/{target.id}", None, {"password": None, "email": 3}),
        ("DELETE", f"admin/users/{target.id}", None, {"should_soft_delete": 2}),
    ]
    failures = []
    for method, path, params, body in cases:
        response = portal.auth(method, path, params=params, json=body)
        if not 400 <= response.status_code < 500:
            failures.append(describe(response))
            continue
        error_json(response)
    # JSON numbers out of range and bodies that are not objects.
    for raw in (b'{"email": "big@example.com", "user_metadata": {"n": 1e400}}', b'[]', b'"text"', b'{"email": '):
        response = portal.auth("POST", "admin/users", content=raw, headers={"content-type": "application/json"})
        if not 400 <= response.status_code < 500:
            failures.append(describe(response))
        else:
            error_json(response)
    assert not failures, "\n".join(failures)
    # The target is untouched and the kernel still serves.
    kept = admin.get_user_by_id(target.id).user
    assert kept.user_metadata == {} and kept.banned_until is None and kept.deleted_at is None
    assert portal.auth("GET", "health", key=portal.anon).status_code == 200
