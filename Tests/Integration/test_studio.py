"""The Studio in a real browser (headless Chromium through Selenium) against the real
kernel binary: the setup wizard from a fresh data directory, sign-in, TOTP enrolment
with codes from pyotp, AAL2, portals and the audit log. Plus the kernel side over HTTP:
redirect, cache and security headers, the license check routes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By

from meltybase_kernel import vendor_license
from studio_driver import (button, click, decode_qr, fill, heading, labelled, next_totp, set_value, text_of,
                           wait_field_error, wait_for, wait_heading, wait_text)

PASSWORD = "Orbital-Quartz-Lantern-77"
EMAIL = "ada@example.com"


@pytest.fixture(scope="module")
def kernel(module_kernel_factory):
    """A fresh kernel without a vendor key: the evaluation path."""
    return module_kernel_factory()


@pytest.fixture(scope="module")
def other_vendor(tmp_path_factory):
    """A license from a vendor this kernel does not trust."""
    return vendor_license(tmp_path_factory.mktemp("other-vendor"))


@pytest.fixture(scope="module")
def state():
    """What the module's tests hand on (TOTP secret, last step used)."""
    return {}


def test_kernel_serves_the_studio_with_strict_headers(kernel):
    root = requests.get(kernel.url + "/", allow_redirects=False, timeout=10)
    assert root.status_code == 302 and root.headers["location"] == "/dashboard"

    page = requests.get(kernel.url + "/dashboard/setup/license", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script type=\"module\"" in page.text and "<style" not in page.text and " style=" not in page.text
    app = re.search(r'src="(/dashboard/assets/[0-9a-f]{16}/js/app\.js)"', page.text).group(1)
    asset = requests.get(kernel.url + app, timeout=10)
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = requests.get(kernel.url + "/dashboard/assets/0000000000000000/js/app.js", timeout=10)
    assert stale.status_code == 404 and stale.json()["code"] == "asset_not_found"

    # The license check routes, before setup.
    offer = requests.get(kernel.url + "/v1/system/license/evaluation", timeout=10).json()
    assert offer == {"available": True, "tier": "indie", "seats": 3, "days": 90, "owner": "evaluation@meltybase.localhost"}
    bad = requests.post(kernel.url + "/v1/system/license/verify", data="{nope", timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_json"
    missing = requests.post(kernel.url + "/v1/system/license/verify", json={}, timeout=10)
    assert missing.status_code == 400 and missing.json()["field"] == "license_key"
    # The evaluation key is on disk, owner-only, and never in the log.
    key_file = kernel.data_dir / "evaluation-license-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() not in kernel.log_text()


def test_wizard_from_a_fresh_data_directory(kernel, browser, other_vendor):
    _, foreign_license = other_vendor
    browser.get(kernel.url + "/")
    wait_for(browser, lambda d: d.current_url.endswith("/dashboard/setup/pulse"), message="redirect to the wizard")
    wait_heading(browser, "System pulse")
    pulse = json.loads(wait_text(browser, "[data-test=pulse-json]", "is_initialized"))
    assert pulse == {"is_initialized": False, "version": pulse["version"], "pulse": "active"}
    click(browser, "Begin the setup handshake")
    wait_heading(browser, "License handshake")

    # A license from another vendor: refused with its reason, next to the field.
    set_value(browser, "License key", foreign_license)
    click(browser, "Verify license")
    error = wait_field_error(browser, "License key")
    assert "signature does not verify" in error and "bad_signature" in error
    assert labelled(browser, "License key").get_attribute("aria-invalid") == "true"
    set_value(browser, "License key", "MB1.not-a-license")
    click(browser, "Verify license")
    wait_for(browser, lambda d: "malformed" in wait_field_error(d, "License key"))

    # A reload mid-way stays on the step.
    browser.refresh()
    wait_heading(browser, "License handshake")
    assert browser.current_url.endswith("/dashboard/setup/license")

    # This machine's evaluation license goes through and shows what it holds.
    click(browser, "Use this machine's evaluation license")
    summary = wait_text(browser, "[data-test=license-summary]", "INDIE")
    assert "3" in summary and "evaluation@meltybase.localhost" in summary
    click(browser, "Continue")
    wait_heading(browser, "Admin provisioning")
    browser.refresh()
    wait_heading(browser, "Admin provisioning")
    assert "INDIE" in text_of(browser, ".card")

    # The API's password policy, shown next to the password.
    fill(browser, "Admin email", EMAIL)
    fill(browser, "Password", "password1234")
    click(browser, "Create the admin and initialize")
    violations = wait_field_error(browser, "Password")
    assert "common" in violations.lower() or "12" in violations, violations
    stored = browser.execute_script("return JSON.stringify(Object.assign({}, sessionStorage))")
    assert "password1234" not in stored and PASSWORD not in stored

    fill(browser, "Password", PASSWORD)
    click(browser, "Create the admin and initialize")
    wait_heading(browser, "Secure handover", timeout=60)
    log = text_of(browser, "[data-test=setup-log]")
    assert "MeltyBase Initialized Successfully." in log
    assert "Tier: INDIE | Seats: 3 | Owner: evaluation@meltybase.localhost" in log
    assert f"Access granted. Entry point: http://localhost:{kernel.port}/dashboard" in log
    stored = browser.execute_script("return JSON.stringify(Object.assign({}, sessionStorage))")
    assert PASSWORD not in stored
    click(browser, "Enter the dashboard")
    wait_heading(browser, "Overview")
    assert "INDIE" in wait_text(browser, "[data-test=overview-license]", "1 used of 3, 2 left")
    assert "active" in text_of(browser, "[data-test=overview-status]")

    # The kernel log has the seed's closing lines and no password.
    kernel_log = kernel.log_text()
    assert "MeltyBase Initialized Successfully." in kernel_log and PASSWORD not in kernel_log

    # Once initialized the wizard is gone for good: the address shows the login.
    browser.execute_script("sessionStorage.clear()")
    browser.get(kernel.url + "/dashboard/setup/license")
    wait_heading(browser, "Sign in")
    assert browser.current_url.endswith("/dashboard/login")
    assert requests.post(kernel.url + "/v1/system/license/evaluation", timeout=10).status_code == 410
    verify_after = requests.post(kernel.url + "/v1/system/license/verify", json={"license_key": foreign_license}, timeout=10)
    assert verify_after.status_code == 401


def test_sign_in_enrol_totp_step_up_create_portal_and_audit(kernel, browser, state):
    browser.get(kernel.url + "/dashboard")
    wait_heading(browser, "Sign in")
    fill(browser, "Email", EMAIL)
    fill(browser, "Password", "wrong-password-123")
    click(browser, "Sign in")
    wait_text(browser, ".notice", "incorrect")
    fill(browser, "Password", PASSWORD)
    click(browser, "Sign in")
    wait_heading(browser, "Overview")
    assert text_of(browser, "[data-test=aal]") == "AAL1"
    plugins = text_of(browser, "[data-test=plugins-table]")

    # A configuration change at AAL1 asks for the second factor; without TOTP, enrol first.
    browser.find_element(By.LINK_TEXT, "Portals").click()
    wait_heading(browser, "Portals")
    fill(browser, "Portal name", "acme")
    click(browser, "Create portal")
    dialog = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "dialog.stepup[open]"))
    wait_for(browser, lambda d: "no second factor" in dialog.text)
    click(browser, "Set up two-factor authentication", scope=dialog)
    wait_heading(browser, "Security")

    # TOTP enrolment: the QR code (drawn as SVG by the kernel's MeltyQR) decodes to the URI.
    click(browser, "Set up two-factor authentication")
    qr = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-test=totp-qr] svg"))
    secret = text_of(browser, "[data-test=totp-secret]").replace(" ", "")
    uri = decode_qr(qr)
    assert uri.startswith("otpauth://totp/MeltyBase:") and f"secret={secret}" in uri
    codes = browser.find_elements(By.CSS_SELECTOR, "[data-test=recovery-codes] li")
    assert len(codes) == 10
    code, step = next_totp(secret)
    fill(browser, "Code from the app", code)
    click(browser, "Confirm and turn on")
    wait_text(browser, "[data-test=mfa-state]", "TOTP is on")
    assert text_of(browser, "[data-test=aal]") == "AAL2"
    state.update(secret=secret, step=step)

    # At AAL2 the portal is created; plugins are switched on and off in place.
    browser.find_element(By.LINK_TEXT, "Portals").click()
    wait_heading(browser, "Portals")
    fill(browser, "Portal name", "acme")
    if "echo-c" in plugins:
        labelled_box = browser.find_element(By.XPATH, "//fieldset//label[normalize-space()='echo-c']/input")
        labelled_box.click()
    click(browser, "Create portal")
    # The portal's keys are shown once, at creation.
    shown = wait_text(browser, "[data-test=portal-keys]", "anon_key")
    assert "service_role_key" in shown
    anon = labelled(browser, "anon_key").get_attribute("value")
    claims = json.loads(base64.urlsafe_b64decode(anon.split(".")[1] + "=="))
    assert claims["ref"] == "acme" and claims["role"] == "anon"
    click(browser, "Done, I have copied them")
    row = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-portal=acme]"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-test=portal-keys]")
    if "echo-swift" in plugins:
        row.find_element(By.CSS_SELECTOR, "input[aria-label='echo-swift in acme']").click()
        wait_text(browser, ".notice", "echo-swift enabled in acme")
    fill(browser, "Portal name", "Not A Name!")
    click(browser, "Create portal")
    assert wait_field_error(browser, "Portal name")

    # The audit log shows what happened, and the chain verifies.
    browser.find_element(By.LINK_TEXT, "Audit log").click()
    wait_heading(browser, "Audit log")
    wait_text(browser, "[data-test=audit-verify-state]", "Chain verified")
    table = text_of(browser, "[data-test=audit-table]")
    for action in ("system.setup", "admin.login", "admin.login_failed", "admin.mfa.enrolled", "hub.portal.create"):
        assert action in table, action
    fill(browser, "Action", "hub.portal.create")
    click(browser, "Apply filters")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-test=audit-table] tbody tr")) == 1
             and "hub.portal.create" in text_of(d, "[data-test=audit-table] tbody"))
    fill(browser, "Per page", "2")
    fill(browser, "Action", "")
    click(browser, "Apply filters")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-test=audit-table] tbody tr")) == 2)
    first_page = text_of(browser, "[data-test=audit-table] tbody")
    click(browser, "Next page")
    wait_for(browser, lambda d: text_of(d, "[data-test=audit-table] tbody") != first_page)
    fill(browser, "Per page", "5000")
    click(browser, "Apply filters")
    assert "1 to 1000" in wait_field_error(browser, "Per page")

    # Signing in again now asks for a TOTP code (a later one: codes never replay).
    click(browser, "Sign out")
    wait_heading(browser, "Sign in")
    fill(browser, "Email", EMAIL)
    fill(browser, "Password", PASSWORD)
    click(browser, "Sign in")
    wait_heading(browser, "Two-factor authentication")
    code, step = next_totp(state["secret"], after_step=state["step"])
    fill(browser, "Authentication code", code)
    click(browser, "Verify")
    wait_heading(browser, "Overview")
    assert text_of(browser, "[data-test=aal]") == "AAL2"
    state["step"] = step


def test_admins_page_invites_up_to_the_seat_cap(kernel, browser):
    browser.find_element(By.LINK_TEXT, "Admins").click()
    wait_heading(browser, "Admins")
    assert "1 of 3 seats used, 2 left" in text_of(browser, "[data-test=seats]")
    fill(browser, "Email", "grace@example.com")
    fill(browser, "Initial password", "short")
    click(browser, "Add admin")
    assert wait_field_error(browser, "Initial password")
    fill(browser, "Initial password", "Another-Long-Passphrase-42")
    click(browser, "Add admin")
    wait_text(browser, "[data-test=admins-table]", "grace@example.com")
    assert "2 of 3 seats used, 1 left" in text_of(browser, "[data-test=seats]")


def test_step_up_dialog_takes_a_code_and_repeats_the_action(kernel, browser, state):
    """A page that meets 403 mfa_required (a session that has only given the password)
    asks for the code in the step-up dialog, then loads at AAL2."""
    pair = requests.post(kernel.url + "/v1/admin/login", json={"email": EMAIL, "password": PASSWORD}, timeout=30).json()
    assert pair["mfa_required"] is True and pair["aal"] == "aal1"
    browser.execute_script(
        "sessionStorage.setItem('meltybase.session', JSON.stringify(Object.assign(arguments[0], {mfa_required: false, email: arguments[1]})))",
        pair, EMAIL)
    browser.get(kernel.url + "/dashboard/portals")
    dialog = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "dialog.stepup[open]"))
    fill(browser, "Authentication code", "000000", scope=dialog)
    click(browser, "Verify", scope=dialog)
    assert "wrong" in wait_for(browser, lambda d: dialog.find_element(By.CSS_SELECTOR, ".field-error").text)
    code, state["step"] = next_totp(state["secret"], after_step=state["step"])
    fill(browser, "Authentication code", code, scope=dialog)
    click(browser, "Verify", scope=dialog)
    wait_heading(browser, "Portals")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-portal=acme]"))
    assert text_of(browser, "[data-test=aal]") == "AAL2"
    assert not browser.find_elements(By.CSS_SELECTOR, "dialog.stepup[open]")


def test_a_configured_vendor_key_keeps_the_strict_path(meltybase_kernel, browser, tmp_path, other_vendor):
    public_key, license_key = vendor_license(tmp_path / "vendor", tier="commercial", seats=20)
    strict = meltybase_kernel(extra_toml=f'[license]\npublic_key = "{public_key}"\n')
    assert not (strict.data_dir / "evaluation-license-signing.key").exists()
    assert requests.get(strict.url + "/v1/system/license/evaluation", timeout=10).json()["available"] is False
    assert requests.post(strict.url + "/v1/system/license/evaluation", timeout=10).status_code == 404

    # A new tab cannot skip steps: the license step is reached from the pulse.
    browser.get(strict.url + "/dashboard/setup/license")
    wait_heading(browser, "System pulse")
    click(browser, "Begin the setup handshake")
    wait_heading(browser, "License handshake")
    assert not browser.find_elements(By.XPATH, "//button[normalize-space()=\"Use this machine's evaluation license\"]")
    set_value(browser, "License key", other_vendor[1])
    click(browser, "Verify license")
    assert "bad_signature" in wait_field_error(browser, "License key")
    set_value(browser, "License key", license_key)
    click(browser, "Verify license")
    summary = wait_text(browser, "[data-test=license-summary]", "COMMERCIAL")
    assert "20" in summary and "owner@example.com" in summary
    # Verified, not applied: the instance is still waiting for setup.
    assert requests.get(strict.url + "/v1/system/status", timeout=10).json()["is_initialized"] is False
    browser.execute_script("sessionStorage.clear()")
