"""GoTrue's email flows and anonymous sign-in through supabase-py's auth client: confirmation
on sign-up, magic links and codes (/otp, /verify), recovery, resend, email change,
invitations, admin generate_link, mail through SMTP (STARTTLS + AUTH with the password from
the portal's Vault), templates per portal, the send rate limit and anonymous users.

Each kernel here is the module's own (the settings are kernel-wide); mail goes to
Tests/Support/smtp_server.py, run as a process, and links and codes are read from what it stored."""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import pytest
from supabase_auth.errors import AuthApiError

import dbkit
from dbkit import jwt_payload
from mailkit import SMTPServer, self_signed_certificate

PASSWORD = "correct-Horse-7-battery"
SITE = "http://app.test"
SMTP_PASSWORD = "smtp-" + secrets.token_hex(8)
MASTER_KEY = secrets.token_hex(32)


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def start_kernel(config: str) -> dbkit.Kernel:
    """A kernel whose config may say EXTERNAL_URL (replaced by its own address) and uses the Vault."""

    def prepare(kernel: dbkit.Kernel) -> None:
        kernel.config.write_text(kernel.config.read_text().replace("EXTERNAL_URL", f"http://127.0.0.1:{kernel.port}"))
        key = kernel.directory / "vault-master.key"
        key.write_text(MASTER_KEY + "\n")
        key.chmod(0o600)

    vault = '\n[plugins.vault]\npath = "libVaultPlugin.so"\n\n[plugins.vault.config]\nmaster_key_file = "vault-master.key"\n'
    try:
        return dbkit.Kernel(vault + config, prepare=prepare)
    except dbkit.SetupError as error:
        pytest.fail(f"cannot start the kernel: {error}", pytrace=False)


# --- kernel A: confirmation on, STARTTLS + AUTH, anonymous users on ------------------------

@pytest.fixture(scope="module")
def tls_dir():
    directory = Path(tempfile.mkdtemp(prefix="meltybase-mail-tls-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def smtp(tls_dir):
    cert, key = self_signed_certificate(tls_dir)
    server = SMTPServer("--starttls", "--cert", str(cert), "--key", str(key), "--auth", f"mailer:{SMTP_PASSWORD}", "--require-auth")
    server.cert = cert
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kernel_a(smtp):
    kernel = start_kernel(f"""
[plugins.database.config]
confirm_email = true
anonymous_users = true
site_url = "{SITE}"
redirect_urls = ["http://allowed.test/*"]
external_url = "EXTERNAL_URL"
email_rate_limit_per_hour = 100000
email_min_interval_seconds = 0

[plugins.database.config.smtp]
host = "localhost"
port = {smtp.port}
security = "starttls"
sender = "auth@meltybase.test"
sender_name = "MeltyBase Auth"
username = "mailer"
password_secret = "SMTP_PASSWORD"
ca_file = "{smtp.cert}"
""")
    yield kernel
    failures = dbkit.stop_and_check(kernel)
    assert not failures, "\n".join(failures)


def with_smtp_secret(portal: dbkit.Portal) -> dbkit.Portal:
    created = portal.request("POST", f"{portal.base}/vault/v1/secrets", json={"name": "SMTP_PASSWORD", "value": SMTP_PASSWORD})
    assert created.status_code in (200, 201), created.text
    return portal


@pytest.fixture(scope="module")
def portal(kernel_a):
    return with_smtp_secret(kernel_a.create_portal("mail", plugins="database,vault"))


def confirmed_user(portal, smtp, tag: str = "user") -> str:
    """A user whose address is confirmed (sign-up, then the code from the mail)."""
    address = unique(tag)
    before = smtp.count()
    portal.client().auth.sign_up({"email": address, "password": PASSWORD})
    mail = smtp.wait_for(address, before)
    session = portal.client().auth.verify_otp({"email": address, "token": mail.code, "type": "email"}).session
    assert session is not None
    return address


def follow(portal, link: str) -> dict[str, list[str]]:
    """GETs a mailed link as a browser does (no API key) and returns the redirect and its fragment."""
    response = portal.http.get(link, follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    return {"location": [location], **parse_qs(urlparse(location).query), **parse_qs(urlparse(location).fragment)}


def implicit_client(portal):
    """A supabase client in the implicit flow (tokens in the link's fragment); `portal.client()`
    uses supabase-py's default, PKCE (a code in the link, exchanged with the stored verifier)."""
    from supabase import ClientOptions, create_client

    return create_client(portal.base, portal.anon, options=ClientOptions(auto_refresh_token=False, persist_session=False, flow_type="implicit"))


def test_settings_report_confirmation_and_anonymous_sign_in(portal):
    settings = portal.auth("GET", "settings", key=portal.anon).json()
    assert settings["mailer_autoconfirm"] is False
    assert settings["external"]["anonymous_users"] is True and settings["external"]["email"] is True


def test_sign_up_needs_confirmation_by_link(portal, smtp):
    address = unique("confirm")
    before = smtp.count()
    client = implicit_client(portal)
    response = client.auth.sign_up({"email": address, "password": PASSWORD, "options": {"data": {"name": "Ada"}}})
    assert response.session is None and response.user is not None and response.user.email == address
    assert response.user.email_confirmed_at is None and response.user.confirmation_sent_at is not None
    with pytest.raises(AuthApiError) as refused:
        portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD})
    assert refused.value.code == "email_not_confirmed" and refused.value.status == 400
    # A wrong password still says only invalid_credentials.
    with pytest.raises(AuthApiError) as wrong:
        portal.client().auth.sign_in_with_password({"email": address, "password": "not-the-password"})
    assert wrong.value.code == "invalid_credentials"

    mail = smtp.wait_for(address, before)
    assert mail.subject == "Confirm Your Signup"
    assert mail.envelope["tls"] is True and mail.envelope["auth_user"] == "mailer"
    assert "MeltyBase Auth" in str(mail.message["from"]) and "auth@meltybase.test" in str(mail.message["from"])
    assert mail.link.startswith(f"{portal.kernel.url}/p/{portal.name}/auth/v1/verify?token=")
    assert "type=signup" in mail.link
    assert mail.code not in mail.link

    landed = follow(portal, mail.link)
    assert landed["location"][0].startswith(SITE + "#access_token=")
    assert landed["type"] == ["signup"] and landed["token_type"] == ["bearer"]
    assert int(landed["expires_in"][0]) > 0 and int(landed["expires_at"][0]) > time.time()
    token = landed["access_token"][0]
    user = portal.auth("GET", "user", key=portal.anon, token=token)
    assert user.status_code == 200 and user.json()["email"] == address and user.json()["email_confirmed_at"]
    refreshed = portal.auth("POST", "token?grant_type=refresh_token", key=portal.anon, json={"refresh_token": landed["refresh_token"][0]})
    assert refreshed.status_code == 200, refreshed.text

    session = portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD}).session
    assert session is not None and jwt_payload(session.access_token)["email"] == address
    # Neither the token nor the SMTP password shows in the kernel's log.
    log = portal.kernel.log_text()
    assert parse_qs(urlparse(mail.link).query)["token"][0] not in log and SMTP_PASSWORD not in log
    # The link works once.
    again = follow(portal, mail.link)
    assert again["error_code"] == ["otp_expired"] and again["error"] == ["access_denied"]
    assert again["location"][0].startswith(SITE + "#error=")


def test_a_second_sign_up_of_an_unconfirmed_address_replaces_the_first_password(portal, smtp):
    # Someone registers the owner's address first; the owner signs up, confirms, and only
    # the owner's password opens the account (no pre-account takeover).
    address = unique("squat")
    client = implicit_client(portal)
    client.auth.sign_up({"email": address, "password": "squatter-password-1"})
    before = smtp.count()
    client.auth.sign_up({"email": address, "password": PASSWORD})
    mail = smtp.wait_for(address, before)
    landed = follow(portal, mail.link)
    assert landed["location"][0].startswith(SITE + "#access_token="), landed
    with pytest.raises(AuthApiError) as refused:
        portal.client().auth.sign_in_with_password({"email": address, "password": "squatter-password-1"})
    assert refused.value.code == "invalid_credentials"
    session = portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD}).session
    assert session is not None


def test_sign_up_confirmed_by_the_code_and_redirect_allow_list(portal, smtp):
    address = unique("code")
    before = smtp.count()
    portal.client().auth.sign_up({"email": address, "password": PASSWORD, "options": {"email_redirect_to": "http://allowed.test/welcome"}})
    mail = smtp.wait_for(address, before)
    assert parse_qs(urlparse(mail.link).query)["redirect_to"] == ["http://allowed.test/welcome"]
    with pytest.raises(AuthApiError) as wrong:
        portal.client().auth.verify_otp({"email": address, "token": "000000" if mail.code != "000000" else "111111", "type": "email"})
    assert wrong.value.status == 403 and wrong.value.code == "otp_expired"
    client = portal.client()
    response = client.auth.verify_otp({"email": address, "token": mail.code, "type": "signup"})
    assert response.session is not None and response.user.email == address and response.user.email_confirmed_at
    assert client.auth.get_user(response.session.access_token).user.id == response.user.id
    # The code is spent, and so is the link carrying the same token.
    with pytest.raises(AuthApiError):
        portal.client().auth.verify_otp({"email": address, "token": mail.code, "type": "signup"})
    assert follow(portal, mail.link)["error_code"] == ["otp_expired"]


def test_redirect_outside_the_allow_list_lands_on_the_site_url(portal, smtp):
    address = unique("evil")
    before = smtp.count()
    implicit_client(portal).auth.sign_up({"email": address, "password": PASSWORD, "options": {"email_redirect_to": "https://evil.test/steal"}})
    mail = smtp.wait_for(address, before)
    assert parse_qs(urlparse(mail.link).query)["redirect_to"] == [SITE]
    # Tampering with the link's redirect_to does not help either.
    tampered = mail.link.replace("redirect_to=http%3A%2F%2Fapp.test", "redirect_to=https%3A%2F%2Fevil.test%2F")
    assert tampered != mail.link
    landed = follow(portal, tampered)
    assert landed["location"][0].startswith(SITE + "#access_token=")


def test_sign_up_of_a_confirmed_address_reveals_nothing_and_sends_nothing(portal, smtp):
    address = confirmed_user(portal, smtp, "again")
    before = smtp.count()
    real_id = portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD}).user.id
    response = portal.client().auth.sign_up({"email": address, "password": "another-Password-9"})
    assert response.session is None and response.user.email == address and response.user.id != real_id
    assert smtp.count() == before


def test_recovery_link_then_new_password(portal, smtp):
    address = confirmed_user(portal, smtp, "recover")
    before = smtp.count()
    client = portal.client()
    client.auth.reset_password_for_email(address, {"redirect_to": "http://allowed.test/reset"})
    mail = smtp.wait_for(address, before)
    assert mail.subject == "Reset Your Password" and "type=recovery" in mail.link
    token_hash = parse_qs(urlparse(mail.link).query)["token"][0]
    response = client.auth.verify_otp({"token_hash": token_hash, "type": "recovery"})
    assert response.session is not None
    new_password = "brand-New-password-42"
    client.auth.update_user({"password": new_password})
    assert portal.client().auth.sign_in_with_password({"email": address, "password": new_password}).session
    with pytest.raises(AuthApiError):
        portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD})
    # An unknown address answers the same, and nothing is sent.
    before = smtp.count()
    portal.client().auth.reset_password_for_email(unique("nobody"))
    assert smtp.count() == before


def test_magic_link_and_one_time_code_sign_in(portal, smtp):
    address = confirmed_user(portal, smtp, "magic")
    before = smtp.count()
    portal.client().auth.sign_in_with_otp({"email": address})
    mail = smtp.wait_for(address, before)
    assert mail.subject == "Your Magic Link" and "type=magiclink" in mail.link
    response = portal.client().auth.verify_otp({"email": address, "token": mail.code, "type": "magiclink"})
    assert response.session is not None and response.user.email == address
    # Again, by the link.
    before = smtp.count()
    implicit_client(portal).auth.sign_in_with_otp({"email": address})
    landed = follow(portal, smtp.wait_for(address, before).link)
    assert landed["type"] == ["magiclink"] and jwt_payload(landed["access_token"][0])["email"] == address


def test_pkce_links_redirect_with_a_code_for_the_verifier(portal, smtp):
    # supabase-py's default flow: sign-up sends a code challenge; the link lands with ?code=.
    address = unique("pkce")
    client = portal.client()
    before = smtp.count()
    assert client.auth.sign_up({"email": address, "password": PASSWORD, "options": {"email_redirect_to": "http://allowed.test/cb?x=1"}}).session is None
    mail = smtp.wait_for(address, before)
    assert "token=pkce_" in mail.link
    landed = follow(portal, mail.link)
    assert landed["location"][0].startswith("http://allowed.test/cb?x=1&code=") and "access_token" not in landed["location"][0]
    session = client.auth.exchange_code_for_session({"auth_code": landed["code"][0]}).session
    assert session is not None and jwt_payload(session.access_token)["email"] == address
    # The code works once; the link too (its error goes in the query, as GoTrue's PKCE flow).
    again = portal.auth("POST", "token?grant_type=pkce", key=portal.anon, json={"auth_code": landed["code"][0], "code_verifier": "v" * 43})
    assert again.status_code == 404 and again.json()["error_code"] == "flow_state_not_found"
    reused = follow(portal, mail.link)
    assert reused["location"][0].startswith("http://allowed.test/cb?x=1&error=") and reused["error_code"] == ["otp_expired"]

    # Recovery, and a wrong verifier.
    before = smtp.count()
    thief = portal.client()
    client.auth.reset_password_for_email(address)
    landed = follow(portal, smtp.wait_for(address, before).link)
    wrong = portal.auth("POST", "token?grant_type=pkce", key=portal.anon, json={"auth_code": landed["code"][0], "code_verifier": "w" * 43})
    assert wrong.status_code == 403 and wrong.json()["error_code"] == "bad_code_verifier"
    with pytest.raises(AuthApiError):
        thief.auth.exchange_code_for_session({"auth_code": landed["code"][0]})
    # A code from a fresh link and the right verifier.
    before = smtp.count()
    client.auth.reset_password_for_email(address)
    landed = follow(portal, smtp.wait_for(address, before).link)
    assert client.auth.exchange_code_for_session({"auth_code": landed["code"][0]}).session
    # Malformed challenges are refused.
    for body in ({"email": address, "code_challenge": "short", "code_challenge_method": "s256"},
                 {"email": address, "code_challenge": "a" * 43, "code_challenge_method": "md5"},
                 {"email": address, "code_challenge": "a" * 43}):
        response = portal.auth("POST", "recover", key=portal.anon, json=body)
        assert response.status_code == 400 and response.json()["error_code"] == "validation_failed", response.text


def test_a_pkce_link_with_its_prefix_stripped_or_its_type_changed_gives_no_session(portal, smtp):
    """Whether a link belongs to a PKCE flow is the server's record, not the URL's: whoever
    holds a leaked link but not the verifier gets neither tokens nor a usable code."""
    address = confirmed_user(portal, smtp, "pkcestrip")
    client = portal.client()  # PKCE by default
    before = smtp.count()
    client.auth.sign_in_with_otp({"email": address, "options": {"email_redirect_to": "http://allowed.test/cb"}})
    link = smtp.wait_for(address, before).link
    assert "token=pkce_" in link
    stripped = follow(portal, link.replace("token=pkce_", "token="))
    assert "access_token" not in stripped and "code" not in stripped, stripped
    assert stripped["error_code"] == ["otp_expired"], stripped
    # Another type that takes the same kind of token: still a code for the flow, or nothing.
    for other in ("email", "signup", "recovery"):
        landed = follow(portal, link.replace("type=magiclink", f"type={other}"))
        assert "access_token" not in landed, (other, landed)
        if "code" in landed:
            break
    # The link as mailed still works for the verifier's holder.
    fresh_before = smtp.count()
    client.auth.sign_in_with_otp({"email": address, "options": {"email_redirect_to": "http://allowed.test/cb"}})
    landed = follow(portal, smtp.wait_for(address, fresh_before).link)
    assert "code" in landed and "access_token" not in landed
    assert client.auth.exchange_code_for_session({"auth_code": landed["code"][0]}).session
    # The six-digit code of a PKCE mail still signs in (both forms are matched by code).
    before = smtp.count()
    client.auth.sign_in_with_otp({"email": address})
    mail = smtp.wait_for(address, before)
    assert portal.client().auth.verify_otp({"email": address, "token": mail.code, "type": "magiclink"}).session is not None
    # And a non-PKCE token does not become one by adding the prefix.
    before = smtp.count()
    implicit_client(portal).auth.sign_in_with_otp({"email": address})
    plain = smtp.wait_for(address, before).link
    assert "token=pkce_" not in plain
    prefixed = follow(portal, plain.replace("token=", "token=pkce_"))
    assert "access_token" not in prefixed and "code" not in prefixed and prefixed["error_code"] == ["otp_expired"], prefixed


def test_otp_creates_users_unless_told_not_to(portal, smtp):
    nobody = unique("nocreate")
    before = smtp.count()
    portal.client().auth.sign_in_with_otp({"email": nobody, "options": {"should_create_user": False}})
    assert smtp.count() == before
    assert portal.sql_rows(f"select count(*) from auth.users where email = '{nobody}'")[0][0] == 0

    newcomer = unique("otpnew")
    portal.client().auth.sign_in_with_otp({"email": newcomer, "options": {"data": {"plan": "free"}}})
    mail = smtp.wait_for(newcomer, before)
    assert mail.subject == "Confirm Your Signup"
    response = portal.client().auth.verify_otp({"email": newcomer, "token": mail.code, "type": "email"})
    assert response.session is not None and response.user.email_confirmed_at and response.user.user_metadata["plan"] == "free"


def test_resend_replaces_the_live_token(portal, smtp):
    address = unique("resend")
    before = smtp.count()
    portal.client().auth.sign_up({"email": address, "password": PASSWORD})
    first = smtp.wait_for(address, before)
    mark = smtp.count()
    portal.client().auth.resend({"type": "signup", "email": address})
    second = smtp.wait_for(address, mark)
    if first.code != second.code:
        with pytest.raises(AuthApiError):
            portal.client().auth.verify_otp({"email": address, "token": first.code, "type": "signup"})
    assert portal.client().auth.verify_otp({"email": address, "token": second.code, "type": "signup"}).session
    # A confirmed address gets nothing more; nor does an unknown one.
    mark = smtp.count()
    portal.client().auth.resend({"type": "signup", "email": address})
    portal.client().auth.resend({"type": "signup", "email": unique("ghost")})
    assert smtp.count() == mark


def test_email_change_waits_for_the_new_address(portal, smtp):
    address = confirmed_user(portal, smtp, "change")
    new_address = unique("changed")
    client = portal.client()
    client.auth.sign_in_with_password({"email": address, "password": PASSWORD})
    before = smtp.count()
    updated = client.auth.update_user({"email": new_address}).user
    assert updated.email == address and updated.new_email == new_address and updated.email_change_sent_at
    mail = smtp.wait_for(new_address, before)
    assert mail.subject == "Confirm Email Change" and address in mail.text and new_address in mail.text
    # Resend reaches the new address again.
    mark = smtp.count()
    portal.client().auth.resend({"type": "email_change", "email": address})
    mail = smtp.wait_for(new_address, mark)
    response = portal.client().auth.verify_otp({"email": new_address, "token": mail.code, "type": "email_change"})
    assert response.session is not None and response.user.email == new_address and response.user.new_email is None
    assert portal.client().auth.sign_in_with_password({"email": new_address, "password": PASSWORD}).session
    with pytest.raises(AuthApiError):
        portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD})


def test_email_change_to_a_taken_address_is_refused(portal, smtp):
    first, second = confirmed_user(portal, smtp, "taken1"), confirmed_user(portal, smtp, "taken2")
    client = portal.client()
    client.auth.sign_in_with_password({"email": first, "password": PASSWORD})
    with pytest.raises(AuthApiError) as refused:
        client.auth.update_user({"email": second})
    assert refused.value.code == "email_exists" and refused.value.status == 422


def test_invite_then_sign_in_and_set_a_password(portal, smtp):
    address = unique("invited")
    before = smtp.count()
    admin = portal.client(portal.service)
    user = admin.auth.admin.invite_user_by_email(address, {"data": {"team": "blue"}}).user
    assert user.email == address and user.invited_at and user.user_metadata["team"] == "blue"
    mail = smtp.wait_for(address, before)
    assert mail.subject == "You have been invited" and "type=invite" in mail.link
    landed = follow(portal, mail.link)
    assert landed["type"] == ["invite"]
    client = portal.client()
    client.auth.set_session(landed["access_token"][0], landed["refresh_token"][0])
    client.auth.update_user({"password": PASSWORD})
    assert portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD}).session
    # Inviting a confirmed user is refused; inviting needs the service role.
    with pytest.raises(AuthApiError) as exists:
        admin.auth.admin.invite_user_by_email(address)
    assert exists.value.code == "email_exists"
    refused = portal.auth("POST", "invite", key=portal.anon, json={"email": unique("x")})
    assert refused.status_code == 403 and refused.json()["error_code"] == "not_admin"


def token_hash(address: str, code: str) -> str:
    return hashlib.sha224((address + code).encode()).hexdigest()


def test_generate_link_for_every_type_sends_nothing(portal, smtp):
    admin = portal.client(portal.service)
    before = smtp.count()

    address = unique("gensignup")
    link = admin.auth.admin.generate_link({"type": "signup", "email": address, "password": PASSWORD, "options": {"data": {"a": 1}}})
    props = link.properties
    assert link.user.email == address and link.user.email_confirmed_at is None and link.user.user_metadata == {"a": 1}
    assert props.verification_type == "signup" and props.redirect_to == SITE and len(props.email_otp) == 6
    assert props.hashed_token == token_hash(address, props.email_otp)
    assert props.action_link == (f"{portal.kernel.url}/p/{portal.name}/auth/v1/verify?token={props.hashed_token}"
                                 f"&type=signup&redirect_to=http%3A%2F%2Fapp.test")
    assert portal.client().auth.verify_otp({"token_hash": props.hashed_token, "type": "signup"}).session
    assert portal.client().auth.sign_in_with_password({"email": address, "password": PASSWORD}).session

    props = admin.auth.admin.generate_link({"type": "magiclink", "email": address}).properties
    assert portal.client().auth.verify_otp({"email": address, "token": props.email_otp, "type": "magiclink"}).session

    props = admin.auth.admin.generate_link(
        {"type": "recovery", "email": address, "options": {"redirect_to": "http://allowed.test/r"}}).properties
    assert props.redirect_to == "http://allowed.test/r"
    landed = follow(portal, props.action_link)
    assert landed["location"][0].startswith("http://allowed.test/r#access_token=") and landed["type"] == ["recovery"]

    invited = unique("geninvite")
    link = admin.auth.admin.generate_link({"type": "invite", "email": invited})
    assert link.user.invited_at and link.properties.verification_type == "invite"
    assert portal.client().auth.verify_otp({"token_hash": link.properties.hashed_token, "type": "invite"}).session

    new_address = unique("gennew")
    props = admin.auth.admin.generate_link({"type": "email_change_new", "email": address, "new_email": new_address}).properties
    assert props.hashed_token == token_hash(new_address, props.email_otp)
    assert "type=email_change" in props.action_link
    changed = portal.client().auth.verify_otp({"token_hash": props.hashed_token, "type": "email_change"})
    assert changed.user.email == new_address

    newer = unique("gencur")
    props = admin.auth.admin.generate_link({"type": "email_change_current", "email": new_address, "new_email": newer}).properties
    assert props.hashed_token == token_hash(new_address, props.email_otp)
    assert portal.client().auth.verify_otp({"email": new_address, "token": props.email_otp, "type": "email_change"}).user.email == newer

    assert smtp.count() == before
    for body, status in [({"type": "recovery", "email": unique("none")}, 404), ({"type": "bogus", "email": address}, 400),
                         ({"type": "signup", "email": newer, "password": PASSWORD}, 422),
                         ({"type": "signup", "email": unique("nopw")}, 422)]:
        response = portal.auth("POST", "admin/generate_link", json=body)
        assert response.status_code == status, (body, response.text)
    refused = portal.auth("POST", "admin/generate_link", key=portal.anon, json={"type": "magiclink", "email": address})
    assert refused.status_code == 403


def test_anonymous_sign_in_and_conversion(portal, smtp):
    client = portal.client()
    response = client.auth.sign_in_anonymously({"options": {"data": {"guest": True}}})
    assert response.session is not None and response.user.is_anonymous is True and response.user.email in (None, "")
    claims = jwt_payload(response.session.access_token)
    assert claims["is_anonymous"] is True and claims["role"] == "authenticated"
    address = unique("convert")
    before = smtp.count()
    assert client.auth.update_user({"email": address}).user.new_email == address
    mail = smtp.wait_for(address, before)
    converted = portal.client().auth.verify_otp({"email": address, "token": mail.code, "type": "email_change"})
    assert converted.user.email == address and converted.user.is_anonymous is False
    assert jwt_payload(converted.session.access_token)["is_anonymous"] is False


def test_expired_tokens_are_refused(portal, smtp, kernel_a):
    address = confirmed_user(portal, smtp, "expire")
    before = smtp.count()
    portal.client().auth.reset_password_for_email(address)
    mail = smtp.wait_for(address, before)
    database = portal.sql_rows("select current_database()")[0][0]
    kernel_a.superuser_sql("UPDATE auth.one_time_tokens SET created_at = now() - interval '2 hours'", database)
    with pytest.raises(AuthApiError) as expired:
        portal.client().auth.verify_otp({"email": address, "token": mail.code, "type": "recovery"})
    assert expired.value.status == 403 and expired.value.code == "otp_expired"
    assert follow(portal, mail.link)["error_code"] == ["otp_expired"]


def test_templates_per_portal_escape_values_and_cannot_add_headers(portal, smtp):
    portal.sql("""insert into auth.email_templates (kind, subject, body_html) values
        ('magic_link', E'Sign in, {{ .Data.name }}\\r\\nBcc: victim@example.com', '<p>Hi {{ .Data.name }} {{ .Email }}{{ .Nope }}</p><a href="{{ .ConfirmationURL }}">go</a> {{ .Token }}')
        on conflict (kind) do update set subject = excluded.subject, body_html = excluded.body_html""")
    address = confirmed_user(portal, smtp, "template")
    portal.sql(f"""update auth.users set raw_user_meta_data = '{{"name": "<b>Eve</b>\\r\\nX-Evil: 1"}}' where email = '{address}'""")
    before = smtp.count()
    portal.client().auth.sign_in_with_otp({"email": address})
    mail = smtp.wait_for(address, before)
    assert mail.subject.startswith("Sign in, <b>Eve</b>") and "\n" not in mail.subject
    assert mail.message["bcc"] is None and mail.message["x-evil"] is None
    assert mail.envelope["rcpt_tos"] == [address]
    assert "&lt;b&gt;Eve&lt;/b&gt;" in mail.html and "<b>Eve</b>" not in mail.html and address in mail.html
    assert "{{" not in mail.html and mail.code in mail.html
    portal.sql("delete from auth.email_templates")


HOSTILE_BODIES = [
    ("verify", {"type": "signup", "token_hash": "a\u0000b"}),
    ("verify", {"type": "email", "email": "a\u0000@example.com", "token": "123456"}),
    ("verify", {"type": "email", "email": "x@example.com", "token": "1" * 100_000}),
    ("verify", {"type": "email", "email": "x@example.com", "token": 123456}),
    ("verify", {"type": 7, "token_hash": "abc"}),
    ("verify", {"type": "nope", "token_hash": "abc"}),
    ("verify", {"type": "signup"}),
    ("verify", {"type": "signup", "token_hash": "\U0001F600" * 50}),
    ("otp", {"email": ["x@example.com"]}),
    ("otp", {"email": "x" * 100_000 + "@example.com"}),
    ("otp", {"email": "x@example.com", "data": [1, 2]}),
    ("otp", {"email": "x@example.com", "data": {"k": "\u0000"}}),
    ("recover", {"email": "not an address"}),
    ("recover", {}),
    ("resend", {"type": "sms", "phone": "+1555"}),
    ("resend", {"type": "signup"}),
    ("resend", {"type": ["signup"], "email": "x@example.com"}),
    ("signup", {"email": "y@example.com"}),
    ("signup", {"email": "y\u0000@example.com", "password": PASSWORD}),
]


def test_hostile_inputs_get_4xx_json(portal):
    for path, body in HOSTILE_BODIES:
        response = portal.auth("POST", path, key=portal.anon, json=body)
        assert 400 <= response.status_code < 500, (path, body, response.status_code, response.text[:300])
        assert "error_code" in response.json(), response.text
    raw = portal.auth("POST", "verify", key=portal.anon, content=b"[1,2", headers={"content-type": "application/json"})
    assert raw.status_code == 400
    # The kernel refuses a NUL anywhere in the URL before the plugin sees it.
    assert portal.http.get(f"{portal.auth_url}/verify?token=%00&type=signup", follow_redirects=False).status_code == 400
    for query in ("token=%01&type=signup", "type=signup", "token=abc&type=bogus", "token=" + "a" * 5000 + "&type=signup",
                  "token=abc&type=signup&redirect_to=javascript:alert(1)", "token=abc&type=signup&redirect_to=%0d%0aX:1"):
        response = portal.http.get(f"{portal.auth_url}/verify?{query}", follow_redirects=False)
        assert response.status_code == 303, (query, response.status_code, response.text)
        location = response.headers["location"]
        assert location.startswith(SITE + "#error=") and "\r" not in location and "\n" not in location, location


def test_portal_without_the_vault_secret_gets_an_actionable_error(kernel_a):
    bare = kernel_a.create_portal("novault", plugins="database,vault")
    response = bare.auth("POST", "signup", key=bare.anon, json={"email": unique("nv"), "password": PASSWORD})
    assert response.status_code == 500 and "SMTP_PASSWORD" in response.json()["msg"], response.text
    # The sign-up was rolled back: the address can register once mail works.
    assert bare.sql_rows("select count(*) from auth.users")[0][0] == 0


# --- kernel B: confirmation off, plain SMTP, a tight rate limit, anonymous users off ------

@pytest.fixture(scope="module")
def plain_smtp():
    server = SMTPServer("--fail-rcpt", "refused@example.com")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kernel_b(plain_smtp):
    kernel = start_kernel(f"""
[plugins.database.config]
external_url = "EXTERNAL_URL"
email_rate_limit_per_hour = 3
email_min_interval_seconds = 60

[plugins.database.config.smtp]
host = "127.0.0.1"
port = {plain_smtp.port}
security = "none"
sender = "auth@meltybase.test"
""")
    yield kernel
    failures = dbkit.stop_and_check(kernel)
    assert not failures, "\n".join(failures)


def test_without_confirmation_sign_up_signs_in_and_email_changes_at_once(kernel_b):
    portal = kernel_b.create_portal("plain")
    settings = portal.auth("GET", "settings", key=portal.anon).json()
    assert settings["mailer_autoconfirm"] is True and settings["external"]["anonymous_users"] is False
    client = portal.client()
    address = unique("plain")
    assert client.auth.sign_up({"email": address, "password": PASSWORD}).session is not None
    new_address = unique("plainnew")
    assert client.auth.update_user({"email": new_address}).user.email == new_address
    with pytest.raises(AuthApiError) as disabled:
        portal.client().auth.sign_in_anonymously()
    assert disabled.value.code == "anonymous_provider_disabled" and disabled.value.status == 422


def test_the_send_rate_limit(kernel_b, plain_smtp):
    portal = kernel_b.create_portal("limit")
    users = [unique(f"rl{i}") for i in range(4)]
    for address in users:
        assert portal.client().auth.sign_up({"email": address, "password": PASSWORD}).session
    before = plain_smtp.count()
    portal.client().auth.reset_password_for_email(users[0])
    plain = plain_smtp.wait_for(users[0], before)
    assert plain.envelope["tls"] is False and plain.envelope["auth_user"] is None
    # Per address: one mail a minute.
    again = portal.auth("POST", "recover", key=portal.anon, json={"email": users[0]})
    assert again.status_code == 429 and again.json()["error_code"] == "over_email_send_rate_limit", again.text
    assert 1 <= int(again.headers["retry-after"]) <= 60
    # Per portal: three an hour.
    portal.client().auth.sign_in_with_otp({"email": users[1]})
    portal.client().auth.reset_password_for_email(users[2])
    over = portal.auth("POST", "otp", key=portal.anon, json={"email": users[3]})
    assert over.status_code == 429 and over.json()["error_code"] == "over_email_send_rate_limit"
    assert int(over.headers["retry-after"]) > 60
    assert plain_smtp.count() == before + 3
    # generate_link sends nothing and is not limited; another portal has its own budget.
    link = portal.auth("POST", "admin/generate_link", json={"type": "magiclink", "email": users[3]})
    assert link.status_code == 200, link.text
    other = kernel_b.create_portal("limit2")
    other_user = unique("other")
    other.client().auth.sign_up({"email": other_user, "password": PASSWORD})
    other.client().auth.reset_password_for_email(other_user)
    plain_smtp.wait_for(other_user, before)


# --- kernel C: confirmation on without mail ---------------------------------------------

def test_confirmation_without_mail_says_what_to_configure(module_kernel_factory):
    kernel = module_kernel_factory("[plugins.database.config]\nconfirm_email = true\n")
    portal = kernel.create_portal("nomail")
    response = portal.auth("POST", "signup", key=portal.anon, json={"email": unique("nm"), "password": PASSWORD})
    assert response.status_code == 422 and response.json()["error_code"] == "email_not_configured"
    assert "[plugins.database.config.smtp]" in response.json()["msg"]
    assert portal.auth("POST", "recover", key=portal.anon, json={"email": unique("nm")}).status_code == 422
    # generate_link needs no mail: its link is a path on this server.
    link = portal.auth("POST", "admin/generate_link", json={"type": "signup", "email": unique("gl"), "password": PASSWORD})
    assert link.status_code == 200 and link.json()["action_link"].startswith(f"/p/{portal.name}/auth/v1/verify?token=")


def test_smtp_without_external_url_is_a_config_error(module_kernel_factory):
    # The kernel keeps running without the plugin and logs why.
    kernel = module_kernel_factory('[plugins.database.config.smtp]\nhost = "localhost"\nsender = "a@example.com"\n')
    deadline = time.monotonic() + 15
    while "set external_url" not in kernel.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "[plugins.database.config.smtp] is set but 'external_url' is not" in kernel.log_text()


def test_a_refused_recipient_is_an_error_and_gives_the_slot_back(kernel_b):
    portal = kernel_b.create_portal("refused")
    assert portal.client().auth.sign_up({"email": "refused@example.com", "password": PASSWORD}).session
    for _ in range(2):  # the second is not 429: the failed send returned its rate-limit slot
        response = portal.auth("POST", "recover", key=portal.anon, json={"email": "refused@example.com"})
        assert response.status_code == 500 and "Error sending recovery email" in response.json()["msg"], response.text
    # The token went with the failed mail (and the portal owner cannot read the table at all).
    database = portal.sql_rows("select current_database()")[0][0]
    assert kernel_b.superuser_sql("select count(*) from auth.one_time_tokens", database) == "0"
    assert portal.sql_response("select count(*) from auth.one_time_tokens").status_code == 400
