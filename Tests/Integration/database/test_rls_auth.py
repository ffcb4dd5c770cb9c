"""GoTrue-dialect auth through supabase-py's auth module, and row-level security decided by
Postgres from the JWT (each request: SET LOCAL ROLE + request.jwt.claims)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pyotp
import pytest
from postgrest.exceptions import APIError
from supabase_auth.errors import AuthApiError, AuthError

from dbkit import describe, error_json, jwt_payload

PASSWORD = "correct-Horse-7-battery"

SETUP = """
create table notes (
  id bigserial primary key,
  owner uuid not null default auth.uid(),
  body text,
  public boolean not null default false
);
alter table notes enable row level security;
create policy own_select on notes for select to authenticated using (owner = auth.uid());
create policy own_insert on notes for insert to authenticated with check (owner = auth.uid());
create policy own_update on notes for update to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
create policy own_delete on notes for delete to authenticated using (owner = auth.uid());
create policy anon_public on notes for select to anon using (public);

create table vault (id int primary key, secret text);
alter table vault enable row level security;
create policy aal2_only on vault for select to authenticated using ((auth.jwt() ->> 'aal') = 'aal2');
insert into vault values (1, 'behind a second factor');

create function whoami() returns json language sql stable as $$
  select json_build_object('uid', auth.uid(), 'role', auth.role(), 'current_user', current_user,
                           'email', auth.jwt() ->> 'email', 'aal', auth.jwt() ->> 'aal')
$$;
"""


@pytest.fixture(scope="module")
def db(portal):
    portal.setup(SETUP, "notes?select=id", "vault?select=id")
    for _ in range(50):
        if portal.rest("POST", "rpc/whoami", json={}).status_code == 200:
            break
        time.sleep(0.2)
    return portal


class User:
    def __init__(self, portal, tag: str):
        self.email = f"{tag}-{uuid.uuid4().hex[:10]}@example.com"
        self.client = portal.client(portal.anon)
        response = self.client.auth.sign_up({"email": self.email, "password": PASSWORD,
                                             "options": {"data": {"tag": tag}}})
        assert response.user is not None and response.user.email == self.email
        self.session = self.client.auth.sign_in_with_password({"email": self.email, "password": PASSWORD}).session
        assert self.session is not None and self.session.access_token
        self.id = self.session.user.id
        self.token = self.session.access_token


@pytest.fixture(scope="module")
def alice(db):
    return User(db, "alice")


@pytest.fixture(scope="module")
def bob(db):
    return User(db, "bob")


def refresh_raw(portal, token: str):
    return portal.auth("POST", "token", key=portal.anon, token=portal.anon,
                       params={"grant_type": "refresh_token"}, json={"refresh_token": token})


def assert_4xx_json(response):
    assert 400 <= response.status_code < 500, describe(response)
    error_json(response)


# --- sign-up, sign-in, the JWT ---------------------------------------------------------


def test_signup_signin_and_claims(db, alice):
    payload = jwt_payload(alice.token)
    assert payload["sub"] == alice.id
    assert payload["role"] == "authenticated"
    assert payload["email"] == alice.email
    assert payload["aal"] == "aal1"
    assert payload.get("session_id")
    assert payload.get("is_anonymous") is False
    assert payload.get("user_metadata", {}).get("tag") == "alice"
    assert "exp" in payload and payload["exp"] > time.time()
    assert alice.session.token_type.lower() == "bearer" and alice.session.refresh_token
    user = alice.client.auth.get_user(alice.token).user
    assert user.id == alice.id and user.email == alice.email


def test_users_live_in_auth_users_with_argon2id_hashes(db, alice):
    """Through the SQL console (service role): the user row, and an Argon2id hash."""
    assert db.sql_rows(f"select email from auth.users where id = '{alice.id}'") == [[alice.email]]
    stored = db.sql_rows(f"select encrypted_password from auth.users where id = '{alice.id}'")[0][0]
    assert PASSWORD not in stored and stored.startswith("$argon2id$"), stored


def test_claims_reach_postgres(db, alice):
    me = alice.client.rpc("whoami", {}).execute().data
    assert me == {"uid": alice.id, "role": "authenticated", "current_user": "authenticated",
                  "email": alice.email, "aal": "aal1"}
    anon = db.client(db.anon).rpc("whoami", {}).execute().data
    assert anon["uid"] is None and anon["role"] == "anon" and anon["current_user"] == "anon"
    service = db.client(db.service).rpc("whoami", {}).execute().data
    assert service["role"] == "service_role" and service["current_user"] == "service_role"


# --- row-level security ------------------------------------------------------------


@pytest.fixture(scope="module")
def notes(db, alice, bob):
    alice.client.table("notes").insert([{"body": "a1", "public": True}, {"body": "a2", "public": False}]).execute()
    bob.client.table("notes").insert({"body": "b1"}).execute()
    return db


def bodies(rows):
    return sorted(row["body"] for row in rows)


def test_each_user_sees_only_own_rows(notes, alice, bob):
    rows = alice.client.table("notes").select("*").execute().data
    assert bodies(rows) == ["a1", "a2"] and {r["owner"] for r in rows} == {alice.id}
    rows = bob.client.table("notes").select("*").execute().data
    assert bodies(rows) == ["b1"] and {r["owner"] for r in rows} == {bob.id}
    # Filters cannot widen what the policy allows.
    assert alice.client.table("notes").select("*").eq("owner", bob.id).execute().data == []
    assert bodies(alice.client.table("notes").select("*").or_("public.is.true,public.is.false").execute().data) == ["a1", "a2"]


def test_service_role_bypasses_rls_and_anon_sees_policy(notes):
    rows = notes.client(notes.service).table("notes").select("body").execute().data
    assert bodies(rows) == ["a1", "a2", "b1"]
    rows = notes.client(notes.anon).table("notes").select("body").execute().data
    assert bodies(rows) == ["a1"]
    response = notes.rest("GET", "notes", key=notes.anon, params={"select": "body", "public": "is.false"})
    assert response.status_code == 200 and response.json() == [], describe(response)


def test_count_respects_rls(notes, alice):
    result = alice.client.table("notes").select("id", count="exact").execute()
    assert result.count == 2


def test_insert_for_another_user_is_403(notes, alice, bob):
    response = notes.rest("POST", "notes", key=notes.anon, token=alice.token, json={"body": "forged", "owner": bob.id})
    assert response.status_code == 403, describe(response)
    assert error_json(response).get("code") == "42501", describe(response)
    with pytest.raises(APIError) as caught:
        alice.client.table("notes").insert({"body": "forged", "owner": bob.id}).execute()
    assert caught.value.code == "42501"
    assert notes.sql_rows("select count(*) from notes where body = 'forged'") == [[0]]


def test_anon_write_is_401(notes):
    response = notes.rest("POST", "notes", key=notes.anon, json={"body": "anon", "owner": str(uuid.uuid4())})
    assert response.status_code == 401, describe(response)
    assert error_json(response).get("code") == "42501", describe(response)


def test_cannot_update_or_delete_other_users_rows(notes, alice, bob):
    bob_row = notes.sql_rows("select id from notes where body = 'b1'")[0][0]
    assert alice.client.table("notes").update({"body": "hacked"}).eq("id", bob_row).execute().data == []
    assert alice.client.table("notes").delete().eq("id", bob_row).execute().data == []
    assert notes.sql_rows(f"select body from notes where id = {bob_row}") == [["b1"]]
    # Moving one's own row to someone else fails the WITH CHECK.
    own = notes.sql_rows("select id from notes where body = 'a2'")[0][0]
    with pytest.raises(APIError) as caught:
        alice.client.table("notes").update({"owner": bob.id}).eq("id", own).execute()
    assert caught.value.code == "42501"
    assert notes.sql_rows(f"select owner::text from notes where id = {own}") == [[alice.id]]


# --- keys and tokens across portals, forged tokens --------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_token(claims: dict, secret: bytes = b"not-the-portal-secret", alg: str = "HS256") -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    if alg == "none":
        return f"{header}.{body}."
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def test_keys_of_another_portal_are_refused(db, alice, new_portal):
    other = new_portal("other")
    other.setup("create table notes (id int primary key, body text); insert into notes values (1, 'other');",
                "notes?select=id")
    # Portal B's keys on portal A, portal A's keys and user token on portal B.
    for key, target in ((other.anon, db), (other.service, db), (db.anon, other), (db.service, other)):
        response = target.rest("GET", "notes", key=key)
        assert response.status_code == 401, describe(response)
        response = target.sql_response("select 1", key=key)
        assert response.status_code in (401, 403), describe(response)
    response = other.rest("GET", "notes", key=other.anon, token=alice.token)
    assert response.status_code == 401, describe(response)
    response = other.auth("GET", "user", key=other.anon, token=alice.token)
    assert response.status_code == 401, describe(response)
    response = other.auth("POST", "token", key=db.anon, token=db.anon, params={"grant_type": "password"},
                          json={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 401, describe(response)
    assert other.count("notes") == 1


@pytest.mark.parametrize("kind", ["wrong-secret", "alg-none", "garbage", "tampered-payload"])
def test_forged_tokens_are_refused(db, alice, kind):
    claims = {"role": "service_role", "sub": alice.id, "exp": int(time.time()) + 3600, "aal": "aal2"}
    token = {
        "wrong-secret": forged_token(claims),
        "alg-none": forged_token(claims, alg="none"),
        "garbage": "not.a.jwt",
        # Alice's real token with the payload swapped: the signature no longer matches.
        "tampered-payload": ".".join([alice.token.split(".")[0], b64(json.dumps(claims).encode()), alice.token.split(".")[2]]),
    }[kind]
    response = db.rest("GET", "notes", key=db.anon, token=token)
    assert response.status_code == 401, describe(response)
    response = db.rest("GET", "notes", key=token, token=token)
    assert response.status_code == 401, describe(response)
    response = db.sql_response("select 1", key=token)
    assert response.status_code in (401, 403), describe(response)


def test_sql_console_refuses_anon_and_users(db, alice):
    assert db.sql_response("select 1", key=db.anon).status_code in (401, 403)
    response = db.request("POST", f"{db.base}/sql/v1/query", key=db.anon, token=alice.token, json={"query": "select 1"})
    assert response.status_code in (401, 403), describe(response)


# --- refresh tokens ------------------------------------------------------------------


def test_refresh_with_client_rotates(db):
    user = User(db, "rot")
    first = user.session.refresh_token
    session = user.client.auth.refresh_session().session
    assert session.refresh_token and session.refresh_token != first
    assert jwt_payload(session.access_token)["sub"] == user.id
    assert user.client.auth.get_user(session.access_token).user.id == user.id


def test_refresh_token_reuse_revokes_the_family(db):
    user = User(db, "reuse")
    r1 = user.session.refresh_token
    response = refresh_raw(db, r1)
    assert response.status_code == 200, describe(response)
    body = response.json()
    r2 = body["refresh_token"]
    assert r2 != r1 and body["access_token"] and body["token_type"].lower() == "bearer"
    assert body["user"]["id"] == user.id and body["expires_in"] > 0 and body["expires_at"] > time.time()
    # The rotated-out token again: refused, and the whole family with it.
    assert_4xx_json(refresh_raw(db, r1))
    assert_4xx_json(refresh_raw(db, r2))
    # A fresh sign-in still works.
    assert user.client.auth.sign_in_with_password({"email": user.email, "password": PASSWORD}).session


def test_logout_invalidates_refresh_token(db):
    user = User(db, "logout")
    refresh = user.session.refresh_token
    user.client.auth.sign_out()
    assert_4xx_json(refresh_raw(db, refresh))


def test_update_user_metadata(db):
    user = User(db, "meta")
    updated = user.client.auth.update_user({"data": {"nickname": "ada", "n": 3}}).user
    assert updated.user_metadata.get("nickname") == "ada" and updated.user_metadata.get("n") == 3
    assert user.client.auth.get_user(user.token).user.user_metadata.get("nickname") == "ada"
    session = user.client.auth.refresh_session().session
    assert jwt_payload(session.access_token)["user_metadata"].get("nickname") == "ada"


def test_get_and_put_user_raw(db, alice):
    response = db.auth("GET", "user", key=db.anon, token=alice.token)
    assert response.status_code == 200, describe(response)
    assert response.json()["id"] == alice.id and response.json()["email"] == alice.email
    response = db.auth("PUT", "user", key=db.anon, token=alice.token, json={"data": {"raw": True}})
    assert response.status_code == 200, describe(response)
    assert response.json()["user_metadata"].get("raw") is True


# --- TOTP ------------------------------------------------------------------------------


def test_totp_enroll_challenge_verify_aal2_unenroll(db):
    user = User(db, "mfa")
    assert user.client.table("vault").select("*").execute().data == []
    enrolled = user.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "phone"})
    assert enrolled.id and enrolled.type == "totp" and enrolled.totp.secret and enrolled.totp.uri.startswith("otpauth://totp/")
    totp = pyotp.TOTP(enrolled.totp.secret)

    challenge = user.client.auth.mfa.challenge({"factor_id": enrolled.id})
    with pytest.raises(AuthError) as caught:
        user.client.auth.mfa.verify({"factor_id": enrolled.id, "challenge_id": challenge.id,
                                     "code": f"{(int(totp.now()) + 1) % 1000000:06d}"})
    assert 400 <= getattr(caught.value, "status", 400) < 500

    challenge = user.client.auth.mfa.challenge({"factor_id": enrolled.id})
    verified = user.client.auth.mfa.verify({"factor_id": enrolled.id, "challenge_id": challenge.id, "code": totp.now()})
    payload = jwt_payload(verified.access_token)
    assert payload["aal"] == "aal2" and payload["sub"] == user.id
    assert "totp" in [entry.get("method") for entry in payload.get("amr", [])]
    level = user.client.auth.mfa.get_authenticator_assurance_level()
    assert level.current_level == "aal2"
    # The aal2 claim reaches Postgres: the policy now lets the row through.
    assert user.client.table("vault").select("secret").execute().data == [{"secret": "behind a second factor"}]

    # A password sign-in is aal1 again, and says aal2 is available.
    fresh = db.client(db.anon)
    fresh.auth.sign_in_with_password({"email": user.email, "password": PASSWORD})
    level = fresh.auth.mfa.get_authenticator_assurance_level()
    assert level.current_level == "aal1" and level.next_level == "aal2"
    assert fresh.table("vault").select("*").execute().data == []

    user.client.auth.mfa.unenroll({"factor_id": enrolled.id})
    factors = user.client.auth.get_user().user.factors or []
    assert all(f.id != enrolled.id for f in factors)


def test_totp_seed_is_stored_sealed_and_bound_to_its_factor(db, portal):
    """The seed is sealed by the kernel (never plaintext in Postgres); a sealed seed copied
    onto another user's factor does not open there, and the failure names no secret."""
    owner, other = User(db, "seal-a"), User(db, "seal-b")
    mine = owner.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "sealed"})
    theirs = other.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "sealed"})
    rows = dict(db.sql_rows(f"select id::text, secret from auth.mfa_factors where id in ('{mine.id}', '{theirs.id}')"))
    assert rows[mine.id].startswith("xc1:") and mine.totp.secret not in rows[mine.id], rows[mine.id]
    assert rows[theirs.id].startswith("xc1:") and theirs.totp.secret not in rows[theirs.id]

    # Before the swap the seed opens: a right code verifies.
    totp = pyotp.TOTP(mine.totp.secret)
    challenge = owner.client.auth.mfa.challenge({"factor_id": mine.id})
    assert owner.client.auth.mfa.verify({"factor_id": mine.id, "challenge_id": challenge.id, "code": totp.now()}).access_token

    # The other user's sealed seed moved onto this factor: no code from either seed verifies.
    db.sql(f"update auth.mfa_factors set secret = (select secret from auth.mfa_factors where id = '{theirs.id}') where id = '{mine.id}'")
    challenge = db.auth("POST", f"factors/{mine.id}/challenge", key=db.anon, token=owner.client.auth.get_session().access_token, json={})
    assert challenge.status_code == 200, describe(challenge)
    response = db.auth("POST", f"factors/{mine.id}/verify", key=db.anon, token=owner.client.auth.get_session().access_token,
                       json={"challenge_id": challenge.json()["id"], "code": pyotp.TOTP(theirs.totp.secret).now()})
    assert response.status_code == 500 and error_json(response)["error_code"] == "unexpected_failure", describe(response)
    assert "cannot be read" in error_json(response)["msg"]
    log = portal.kernel.log_text()
    assert "does not open" in log
    assert mine.totp.secret not in log and theirs.totp.secret not in log


def test_totp_needs_a_session(db):
    response = db.auth("POST", "factors", key=db.anon, json={"factor_type": "totp"})
    assert response.status_code == 401, describe(response)
    error_json(response)


# --- hostile and bad inputs: 4xx JSON, never 5xx ---------------------------------------


def test_wrong_password_is_400(db, alice):
    response = db.auth("POST", "token", key=db.anon, params={"grant_type": "password"},
                       json={"email": alice.email, "password": "wrong-password-1"})
    assert response.status_code == 400, describe(response)
    assert any(word in response.text for word in ("invalid_grant", "invalid_credentials")), describe(response)
    with pytest.raises(AuthApiError) as caught:
        db.client(db.anon).auth.sign_in_with_password({"email": alice.email, "password": "wrong-password-1"})
    assert caught.value.status == 400


def test_unknown_user_looks_like_wrong_password(db):
    response = db.auth("POST", "token", key=db.anon, params={"grant_type": "password"},
                       json={"email": "nobody-here@example.com", "password": "whatever-1234"})
    assert response.status_code == 400, describe(response)


def test_duplicate_signup_does_not_take_over(db, alice):
    response = db.auth("POST", "signup", key=db.anon, json={"email": alice.email, "password": "another-Password-42"})
    assert response.status_code < 500, describe(response)
    if response.status_code == 200:
        assert not response.json().get("access_token"), describe(response)
    assert db.client(db.anon).auth.sign_in_with_password({"email": alice.email, "password": PASSWORD}).session
    bad = db.auth("POST", "token", key=db.anon, params={"grant_type": "password"},
                  json={"email": alice.email, "password": "another-Password-42"})
    assert bad.status_code == 400, describe(bad)


@pytest.mark.parametrize("method,path,params,body", [
    ("POST", "signup", None, {"password": PASSWORD}),
    ("POST", "signup", None, {"email": "not-an-email", "password": PASSWORD}),
    ("POST", "signup", None, {"email": "weak@example.com", "password": "1"}),
    ("POST", "signup", None, {"email": "", "password": ""}),
    ("POST", "signup", None, {"email": ["a@example.com"], "password": {"x": 1}}),
    ("POST", "signup", None, {"email": "x" * 5000 + "@example.com", "password": PASSWORD}),
    ("POST", "signup", None, b"{not json"),
    ("POST", "signup", None, b""),
    ("POST", "token", {"grant_type": "password"}, {"email": "a@example.com"}),
    ("POST", "token", {"grant_type": "password"}, {}),
    ("POST", "token", {"grant_type": "nope"}, {"email": "a@example.com", "password": PASSWORD}),
    ("POST", "token", None, {"email": "a@example.com", "password": PASSWORD}),
    ("POST", "token", {"grant_type": "refresh_token"}, {"refresh_token": "garbage"}),
    ("POST", "token", {"grant_type": "refresh_token"}, {"refresh_token": "' or 1=1 --"}),
    ("POST", "token", {"grant_type": "refresh_token"}, {}),
    ("POST", "token", {"grant_type": "password"}, {"email": "' or 1=1 --", "password": "' or 1=1 --"}),
    ("GET", "user", None, None),
    ("PUT", "user", None, {"data": {"x": 1}}),
    ("POST", "logout", None, None),
    ("POST", "factors/not-a-uuid/challenge", None, {}),
    ("POST", "factors/00000000-0000-0000-0000-000000000000/verify", None, {"challenge_id": "x", "code": "123456"}),
    ("DELETE", "factors/00000000-0000-0000-0000-000000000000", None, None),
], ids=["signup-no-email", "signup-bad-email", "signup-weak-password", "signup-empty", "signup-wrong-types",
        "signup-long-email", "signup-not-json", "signup-empty-body", "password-no-password", "password-empty",
        "unknown-grant", "no-grant", "refresh-garbage", "refresh-injection", "refresh-missing",
        "password-injection", "user-no-token", "put-user-no-token", "logout-no-token", "challenge-bad-id",
        "verify-unknown-factor", "unenroll-no-token"])
def test_bad_auth_requests_are_4xx_json(db, method, path, params, body):
    kwargs = {"params": params}
    if isinstance(body, bytes):
        kwargs["content"] = body
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    response = db.auth(method, path, key=db.anon, token=db.anon, **kwargs)
    assert_4xx_json(response)


def test_bad_mfa_requests_with_a_session_are_4xx(db):
    user = User(db, "badmfa")
    for method, path, body in [
        ("POST", "factors", {"factor_type": "sms-carrier-pigeon"}),
        ("POST", "factors/not-a-uuid/challenge", {}),
        ("POST", f"factors/{uuid.uuid4()}/challenge", {}),
        ("POST", f"factors/{uuid.uuid4()}/verify", {"challenge_id": str(uuid.uuid4()), "code": "000000"}),
        ("DELETE", f"factors/{uuid.uuid4()}", None),
    ]:
        response = db.auth(method, path, key=db.anon, token=user.token, json=body)
        assert_4xx_json(response)
    # Another user's factor is not ours to challenge or delete.
    owner = User(db, "factor-owner")
    factor = owner.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "owner's"}).id
    assert_4xx_json(db.auth("POST", f"factors/{factor}/challenge", key=db.anon, token=user.token, json={}))
    assert_4xx_json(db.auth("DELETE", f"factors/{factor}", key=db.anon, token=user.token))
    factors = owner.client.auth.get_user().user.factors or []
    assert [f.id for f in factors] == [factor]


def test_enroll_without_friendly_name(db):
    """supabase-py's enroll() sends friendly_name null; GoTrue answers a string ("")."""
    user = User(db, "nofriendly")
    enrolled = user.client.auth.mfa.enroll({"factor_type": "totp"})
    assert enrolled.id and enrolled.totp.secret


# --- more of the GoTrue surface ---------------------------------------------------------


def test_settings_and_health(db):
    for path in ("settings", "health"):
        response = db.auth("GET", path, key=db.anon)
        assert response.status_code == 200, describe(response)
        assert isinstance(response.json(), dict), describe(response)


def test_apikey_alone_is_anon(db):
    response = db.http.post(f"{db.rest_url}/rpc/whoami", json={}, headers={"apikey": db.anon})
    assert response.status_code == 200, describe(response)
    assert response.json()["role"] == "anon" and response.json()["uid"] is None


def test_foreign_apikey_with_a_valid_user_token_is_refused(db, alice, new_portal):
    other = new_portal("apikey")
    response = db.http.post(f"{db.rest_url}/rpc/whoami", json={},
                            headers={"apikey": other.anon, "Authorization": f"Bearer {alice.token}"})
    assert response.status_code == 401, describe(response)


def test_logout_scopes(db):
    user = User(db, "scopes")
    second = db.client(db.anon).auth.sign_in_with_password({"email": user.email, "password": PASSWORD}).session
    third_client = db.client(db.anon)
    third = third_client.auth.sign_in_with_password({"email": user.email, "password": PASSWORD}).session
    # local: only this session ends.
    user.client.auth.sign_out({"scope": "local"})
    assert_4xx_json(refresh_raw(db, user.session.refresh_token))
    response = refresh_raw(db, second.refresh_token)
    assert response.status_code == 200, describe(response)
    second_rotated = response.json()["refresh_token"]
    # others: every session but this one ends.
    third_client.auth.sign_out({"scope": "others"})
    assert_4xx_json(refresh_raw(db, second_rotated))
    response = refresh_raw(db, third.refresh_token)
    assert response.status_code == 200, describe(response)


def test_totp_codes_are_single_use(db):
    user = User(db, "once")
    factor = user.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "once"})
    code = pyotp.TOTP(factor.totp.secret).now()
    challenge = user.client.auth.mfa.challenge({"factor_id": factor.id})
    user.client.auth.mfa.verify({"factor_id": factor.id, "challenge_id": challenge.id, "code": code})
    challenge = user.client.auth.mfa.challenge({"factor_id": factor.id})
    response = db.auth("POST", f"factors/{factor.id}/verify", key=db.anon, token=user.client.auth.get_session().access_token,
                       json={"challenge_id": challenge.id, "code": code})
    if pyotp.TOTP(factor.totp.secret).now() == code:  # Still the same 30 s step: the reuse must be refused.
        assert_4xx_json(response)


def test_unverified_factor_cannot_be_challenged_into_aal2_by_another_code(db):
    user = User(db, "wrongcode")
    factor = user.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "x"})
    challenge = user.client.auth.mfa.challenge({"factor_id": factor.id})
    other_secret = pyotp.random_base32()
    response = db.auth("POST", f"factors/{factor.id}/verify", key=db.anon, token=user.token,
                       json={"challenge_id": challenge.id, "code": pyotp.TOTP(other_secret).now()})
    if pyotp.TOTP(other_secret).now() != pyotp.TOTP(factor.totp.secret).now():
        assert_4xx_json(response)
        assert "access_token" not in response.text


def test_rls_through_rpc_and_auth_role(db, notes, alice, bob):
    db.sql("create function my_notes() returns setof notes language sql stable as $$ select * from notes $$;"
           "create policy role_probe on notes for select to authenticated using (auth.role() = 'authenticated' and false);")
    for _ in range(75):
        if db.rest("POST", "rpc/my_notes", json={}).status_code == 200:
            break
        time.sleep(0.2)
    assert bodies(alice.client.rpc("my_notes", {}).execute().data) == ["a1", "a2"]
    assert bodies(bob.client.rpc("my_notes", {}).execute().data) == ["b1"]
    assert bodies(db.client(db.anon).rpc("my_notes", {}).execute().data) == ["a1"]


def test_no_role_or_claims_leak_between_pooled_requests(db, notes, alice, bob):
    """Many interleaved requests of different roles (and failing ones) over the pooled
    connections: each answer is computed with its own role and claims."""
    import threading

    import httpx

    expected = {"alice": ["a1", "a2"], "bob": ["b1"], "anon": ["a1"], "service": ["a1", "a2", "b1"]}
    tokens = {"alice": alice.token, "bob": bob.token, "anon": db.anon, "service": db.service}
    whoami = {"alice": alice.id, "bob": bob.id, "anon": None, "service": None}
    wrong: list[str] = []
    lock = threading.Lock()

    def worker(name: str):
        headers = {"apikey": db.anon, "Authorization": f"Bearer {tokens[name]}"}
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
            for i in range(25):
                if i % 5 == 4:
                    # A failing request in between (bad value: the transaction aborts).
                    response = client.get(f"{db.rest_url}/notes", params={"id": "eq.not-a-number"}, headers=headers)
                    if response.status_code != 400:
                        with lock:
                            wrong.append(f"{name}: bad value -> {response.status_code}")
                    continue
                if i % 2:
                    response = client.post(f"{db.rest_url}/rpc/whoami", json={}, headers=headers)
                    got = response.json().get("uid") if response.status_code == 200 else response.text
                    want = whoami[name]
                else:
                    response = client.get(f"{db.rest_url}/notes", params={"select": "body", "body": "in.(a1,a2,b1)"},
                                          headers=headers)
                    got = sorted(r["body"] for r in response.json()) if response.status_code == 200 else response.text
                    want = expected[name]
                if response.status_code != 200 or got != want:
                    with lock:
                        wrong.append(f"{name}: {response.status_code} got {got!r}, want {want!r}")

    threads = [threading.Thread(target=worker, args=(name,)) for name in expected for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not wrong, "\n".join(wrong[:20])


# --- the TOTP enrolment's QR code ------------------------------------------------------

GOTRUE_QR_PREFIX = "data:image/svg+xml;utf-8,"


def qr_modules_from_svg(svg: str) -> list[list[bool]]:
    """The module grid the SVG draws (its one path of unit squares), the 4-module quiet zone
    checked and stripped; the SVG is parsed as XML, so a malformed document fails here."""
    import re
    import xml.etree.ElementTree as ElementTree

    ns = "{http://www.w3.org/2000/svg}"
    root = ElementTree.fromstring(svg)
    assert root.tag == f"{ns}svg" and root.get("shape-rendering") == "crispEdges", svg[:200]
    assert not root.findall(f".//{ns}script") and "<script" not in svg and "#" not in svg
    _, _, width, height = (int(part) for part in root.get("viewBox").split())
    assert width == height
    background = root.find(f"{ns}rect")
    assert background is not None and background.get("fill") == "white"
    assert (background.get("width"), background.get("height")) == (str(width), str(width))
    paths = root.findall(f"{ns}path")
    assert len(paths) == 1 and paths[0].get("fill") == "black"
    d = paths[0].get("d")
    assert re.fullmatch(r"(?:M\d+,\d+h1v1h-1z)+", d), d[:200]
    full = [[False] * width for _ in range(width)]
    for x, y in re.findall(r"M(\d+),(\d+)h1v1h-1z", d):
        full[int(y)][int(x)] = True
    dark = [(x, y) for y in range(width) for x in range(width) if full[y][x]]
    # Finders sit in three corners: the dark modules span the code exactly, 4 in from each edge.
    assert min(x for x, _ in dark) == 4 and min(y for _, y in dark) == 4
    assert max(x for x, _ in dark) == width - 5 and max(y for _, y in dark) == width - 5
    size = width - 8
    assert size >= 21 and (size - 17) % 4 == 0, size
    return [row[4:4 + size] for row in full[4:4 + size]]


def decode_qr_modules(modules: list[list[bool]]) -> str:
    """Draws the grid (8 px a module, 4 white modules around) and decodes it with zxing-cpp."""
    import zxingcpp
    from PIL import Image

    scale, quiet = 8, 4
    side = (len(modules) + 2 * quiet) * scale
    image = Image.new("L", (side, side), 255)
    for y, row in enumerate(modules):
        for x, is_dark in enumerate(row):
            if is_dark:
                left, top = (x + quiet) * scale, (y + quiet) * scale
                image.paste(0, (left, top, left + scale, top + scale))
    results = zxingcpp.read_barcodes(image)
    assert results, "zxing-cpp found no QR code in the rendered grid"
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    return results[0].text


def test_totp_qr_code_is_an_svg_of_the_uri_that_decodes(db):
    """qr_code is GoTrue's: a bare SVG document, to which supabase-py (like supabase-js)
    prepends `data:image/svg+xml;utf-8,`. The grid rebuilt from its path decodes to the uri,
    for a short URI and for one long enough to need version 10 (the largest drawn)."""
    user = User(db, "mfa-qr")
    short = user.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "qr short", "issuer": "Acme"})
    assert short.totp.qr_code.startswith(GOTRUE_QR_PREFIX), short.totp.qr_code[:80]
    svg = short.totp.qr_code[len(GOTRUE_QR_PREFIX):]
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    modules = qr_modules_from_svg(svg)
    assert decode_qr_modules(modules) == short.totp.uri
    assert (len(modules) - 17) // 4 < 10

    # The issuer appears twice in the URI (label and parameter), unencoded when alphanumeric:
    # pick its length so the URI is 205 bytes (version 10 holds 181 to 213 at level M).
    base = len(short.totp.uri) - 2 * len("Acme")
    issuer = ("LongFriendlyIssuer" * 10)[: (205 - base) // 2]
    long = user.client.auth.mfa.enroll({"factor_type": "totp", "friendly_name": "qr long", "issuer": issuer})
    assert issuer in long.totp.uri and 181 <= len(long.totp.uri) <= 213, len(long.totp.uri)
    modules = qr_modules_from_svg(long.totp.qr_code[len(GOTRUE_QR_PREFIX):])
    assert len(modules) == 57  # Version 10: two-byte count, five blocks, version information.
    assert decode_qr_modules(modules) == long.totp.uri

    # On the wire the value is the bare SVG (no data URL prefix, which the clients add).
    response = db.auth("POST", "factors", key=db.anon, token=user.token,
                       json={"factor_type": "totp", "friendly_name": "qr raw", "issuer": "Acme"})
    assert response.status_code == 200, describe(response)
    totp = response.json()["totp"]
    assert totp["qr_code"].startswith("<svg ") and decode_qr_modules(qr_modules_from_svg(totp["qr_code"])) == totp["uri"]

    # A URI past version 10 gets no QR code (still an enrolment, with its uri to type in).
    response = db.auth("POST", "factors", key=db.anon, token=user.token,
                       json={"factor_type": "totp", "friendly_name": "qr too long", "issuer": "X" * 120})
    assert response.status_code == 200, describe(response)
    assert len(response.json()["totp"]["uri"]) > 213 and response.json()["totp"]["qr_code"] == ""


def test_app_tables_may_reference_auth_users(db, alice):
    """Supabase schemas key their tables to users (`profiles.id REFERENCES auth.users`):
    the portal's owner role may create such a foreign key, and it holds."""
    db.sql("create table public.profiles_ref (id uuid primary key references auth.users(id) on delete cascade, name text)")
    db.sql(f"insert into public.profiles_ref values ('{alice.id}', 'alice')")
    refused = db.request("POST", f"{db.base}/sql/v1/query", key=db.service, json={"query": "insert into public.profiles_ref values (gen_random_uuid(), 'nobody')"})
    assert refused.status_code == 400 and refused.json()["code"] == "23503", refused.text
