"""The Edge plugin's Studio page in a real browser: deploy a function from the form, see it
in the table, call it with "Try it", follow its console output in the logs panel, see a
refused deploy's problems with their file and line, make an older version active again
and delete the function. Also the admin API's access rules over plain HTTP."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By

from instance_setup import post, set_up_instance
from studio_driver import click, fill, labelled, next_totp, set_value, text_of, wait_for, wait_heading, wait_text

ROOT = Path(__file__).resolve().parents[2]
DENO = os.environ.get("MELTYBASE_DENO") or str(ROOT / ".venv" / "bin" / "deno")

EMAIL = "edda@example.com"
PASSWORD = "Basalt-Harbour-Compass-61"
PORTAL = "edgy"
FUNCTIONS = f"/p/{PORTAL}/edge/v1/functions"

TOML = f"""
[plugins.edge]
path = "libEdgePlugin.so"

[plugins.edge.config]
deno_path = "{DENO}"

[rate_limit]
per_client = {{ rate = 100000, burst = 100000 }}
per_portal = {{ rate = 100000, burst = 100000 }}
"""

# Version 2: reads the JSON body and logs a line.
GREETER = """Deno.serve(async (req) => {
  const body = await req.json().catch(() => ({}));
  console.log("studio says hi to " + (body.name ?? "nobody"));
  return new Response("Hello " + (body.name ?? "nobody") + " from " + new URL(req.url).pathname);
});
"""

# Refused: a type error on line 3.
BROKEN = """Deno.serve(() => {
  const greeting = "hi";
  const count: number = greeting;
  return new Response(String(count));
});
"""


@pytest.fixture(scope="module")
def kernel(module_kernel_factory):
    return module_kernel_factory(extra_toml=TOML)


@pytest.fixture(scope="module")
def admin(kernel):
    """The instance's admin (`pair` at aal2, TOTP `secret` and the `step` used), and the
    portal's keys (`anon`, `service`)."""
    instance = set_up_instance(kernel, EMAIL, PASSWORD)
    pair = instance["pair"]
    created = post(kernel, "/v1/hub/portals", {"name": PORTAL, "plugins": ["edge"]}, pair["access_token"])
    assert created.status_code in (200, 201), created.text
    body = created.json()
    keys = {"anon": body.get("anon_key") or body["keys"]["anon"],
            "service": body.get("service_role_key") or body["keys"]["service_role"]}
    deadline = time.monotonic() + 30  # the kernel picks the portal up from its NOTIFY a moment later
    while requests.get(kernel.url + FUNCTIONS, timeout=30).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"pair": pair, "secret": instance["secret"], "step": instance["step"], **keys}


def bearer(token: str | None) -> dict:
    return {"authorization": f"Bearer {token}"} if token else {}


def test_the_admin_api_answers_the_service_role_and_admins_only(kernel, admin):
    url = kernel.url + FUNCTIONS
    nobody = requests.get(url, timeout=30)
    assert nobody.status_code == 401, nobody.text
    assert nobody.json()["code"] in ("credential_required", "invalid_credential"), nobody.text

    anon = requests.get(url, headers={"apikey": admin["anon"], **bearer(admin["anon"])}, timeout=30)
    assert anon.status_code == 403 and anon.json()["code"] == "service_role_required", anon.text
    refused = requests.post(url, json={"name": "sneaky", "files": {"index.ts": "Deno.serve(() => new Response('x'));"}},
                            headers={"apikey": admin["anon"], **bearer(admin["anon"])}, timeout=60)
    assert refused.status_code == 403 and refused.json()["code"] == "service_role_required", refused.text

    as_admin = requests.get(url, headers=bearer(admin["pair"]["access_token"]), timeout=30)
    assert as_admin.status_code == 200, as_admin.text
    assert as_admin.json()["functions"] == []
    service = requests.get(url, headers={"apikey": admin["service"], **bearer(admin["service"])}, timeout=30)
    assert service.status_code == 200 and service.json()["functions"] == [], service.text

    # Changes need the second factor: a password-only session is aal1.
    password_only = post(kernel, "/v1/admin/login", {"email": EMAIL, "password": PASSWORD}).json()
    assert password_only["aal"] == "aal1", password_only
    at_aal1 = requests.post(url, json={"name": "early", "files": {"index.ts": "Deno.serve(() => new Response('x'));"}},
                            headers=bearer(password_only["access_token"]), timeout=60)
    assert at_aal1.status_code == 403 and at_aal1.json()["code"] == "aal2_required", at_aal1.text


def sign_in(browser, kernel, pair, path):
    """Puts `pair` in the tab's session (as the login would) and opens /dashboard/<path>."""
    browser.get(kernel.url + "/dashboard/login")
    browser.execute_script("sessionStorage.clear()")  # a previous test's session
    browser.get(kernel.url + "/dashboard/login")
    wait_for(browser, lambda d: text_of(d, "h1"), message="a screen")
    browser.execute_script(
        "sessionStorage.setItem('meltybase.session', JSON.stringify(Object.assign(arguments[0], {mfa_required: false, email: arguments[1]})))",
        pair, EMAIL)
    browser.get(kernel.url + "/dashboard/" + path)


def active_version(browser) -> str:
    return text_of(browser, "[data-test=edge-functions] tr[data-function=hello] [data-test=edge-active-version]")


def wait_active_version(browser, version: str, timeout: float = 60) -> None:
    wait_for(browser, lambda d: active_version(d) == version, timeout, f"active version {version} (now {active_version(browser)!r})")


def versions_listed(browser) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('[data-test=edge-versions] tbody tr[data-version]')].map((r) => r.dataset.version)")


def try_it(browser, contains: str, timeout: float = 60) -> str:
    """Sends the "Try it" form and waits for an answer containing `contains`."""
    browser.execute_script("const r = document.querySelector('[data-test=edge-try-result]'); if (r) r.replaceChildren();")
    click(browser, "Send")
    return wait_text(browser, "[data-test=edge-try-body]", contains, timeout)


def test_the_edge_page_deploys_calls_logs_refuses_rolls_back_and_deletes(kernel, admin, browser):
    token = admin["pair"]["access_token"]
    sign_in(browser, kernel, admin["pair"], f"plugins/edge/functions/{PORTAL}")
    wait_heading(browser, "Edge functions")
    wait_text(browser, "[data-test=edge-functions]", "No functions yet")
    assert "Deno.serve" in labelled(browser, "index.ts").get_attribute("value")
    assert labelled(browser, "Require a JWT (verify_jwt): callers send a key or user token of the portal").is_selected()

    # Deploy the default function from the form: it appears in the table, its panel opens.
    fill(browser, "Name", "hello")
    click(browser, "Deploy")
    wait_active_version(browser, "1")
    wait_text(browser, "[data-test=edge-status]", "version 1 deployed")
    assert "Yes" in text_of(browser, "[data-test=edge-functions] tr[data-function=hello]")
    wait_text(browser, "[data-test=edge-function]", f"/p/{PORTAL}/functions/v1/hello")
    wait_for(browser, lambda d: versions_listed(d) == ["1"], message="version 1 in the versions table")
    listed = requests.get(kernel.url + FUNCTIONS, headers=bearer(token), timeout=30).json()["functions"]
    assert [f["name"] for f in listed] == ["hello"] and listed[0]["verify_jwt"] is True, listed

    # "Try it" calls it as the admin and shows the status and the text.
    try_it(browser, "Hello from /hello")
    assert text_of(browser, "[data-test=edge-try-status]").startswith("200")

    # Version 2 logs a line: it shows in the logs panel (polled every 2 s).
    set_value(browser, "index.ts", GREETER)
    click(browser, "Deploy")
    wait_active_version(browser, "2")
    wait_for(browser, lambda d: versions_listed(d) == ["2", "1"], message="versions 2 and 1")
    try_it(browser, "Hello Studio from /hello")
    wait_text(browser, "[data-test=edge-logs]", "studio says hi to Studio", timeout=30)
    logged = requests.get(f"{kernel.url}{FUNCTIONS}/hello/logs?after=0&limit=100", headers=bearer(token), timeout=30).json()["lines"]
    assert any("studio says hi to Studio" in line["message"] for line in logged), logged
    # The invocation counter reaches the table (the list is read again after a call).
    wait_for(browser, lambda d: text_of(d, "[data-test=edge-functions] tr[data-function=hello] [data-test=edge-invocations]") not in ("", "—", "0"),
             message="an invocation count")

    # A type error is refused: each problem with its file and line, focused, nothing deployed.
    set_value(browser, "index.ts", BROKEN)
    click(browser, "Deploy")
    problems = wait_text(browser, "[data-test=edge-deploy-errors]", "index.ts:3", timeout=60)
    assert "Nothing was deployed" in problems and "type_error" in problems, problems
    assert browser.switch_to.active_element.get_attribute("data-test") == "edge-deploy-errors"
    assert labelled(browser, "index.ts").get_attribute("aria-invalid") == "true"
    assert active_version(browser) == "2" and versions_listed(browser) == ["2", "1"]
    # Its place is a button that puts the caret on that line.
    browser.find_element(By.CSS_SELECTOR, "[data-test=edge-deploy-errors] button.edge-jump").click()
    caret_line = browser.execute_script(
        "const t = document.activeElement; return t.value.slice(0, t.selectionStart).split('\\n').length")
    assert caret_line == 3

    # Make version 1 active again: the table and the function follow.
    click(browser, "Make active")
    wait_active_version(browser, "1")
    wait_text(browser, "[data-test=edge-status]", "now runs version 1")
    try_it(browser, "Hello from /hello")
    described = requests.get(f"{kernel.url}{FUNCTIONS}/hello", headers=bearer(token), timeout=30).json()
    assert described["active_version"] == 1 and sorted(v["version"] for v in described["versions"]) == [1, 2], described
    assert all(str(v.get("created_by", "")).startswith("admin") for v in described["versions"]), described

    # Delete, after the confirmation.
    click(browser, "Delete")
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_text(browser, "[data-test=edge-functions]", "No functions yet")
    wait_text(browser, "[data-test=edge-status]", "hello deleted")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-test=edge-function]")
    gone = requests.post(f"{kernel.url}/p/{PORTAL}/functions/v1/hello", json={}, headers=bearer(token), timeout=30)
    assert gone.status_code == 404, gone.text


def test_a_password_only_session_deploys_after_the_second_factor(kernel, admin, browser):
    """An admin who signed in with the password only (aal1) is asked for the code (the
    plugin alone would answer 403 aal2_required to a deploy, see above), then deploys."""
    pair = post(kernel, "/v1/admin/login", {"email": EMAIL, "password": PASSWORD}).json()
    assert pair["aal"] == "aal1" and pair["mfa_required"] is True, pair
    sign_in(browser, kernel, pair, f"plugins/edge/functions/{PORTAL}")
    dialog = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "dialog.stepup[open]"), message="the step-up dialog")
    code, admin["step"] = next_totp(admin["secret"], after_step=admin["step"])
    fill(browser, "Authentication code", code, scope=dialog)
    click(browser, "Verify", scope=dialog)
    wait_heading(browser, "Edge functions")
    assert text_of(browser, "[data-test=aal]") == "AAL2"
    wait_text(browser, "[data-test=edge-functions]", "No functions yet")
    fill(browser, "Name", "stepped")
    click(browser, "Deploy")
    wait_for(browser, lambda d: text_of(d, "[data-test=edge-functions] tr[data-function=stepped] [data-test=edge-active-version]") == "1",
             60, "stepped at version 1")
    wait_text(browser, "[data-test=edge-status]", "stepped version 1 deployed")
    described = requests.get(f"{kernel.url}{FUNCTIONS}/stepped", headers=bearer(admin["pair"]["access_token"]), timeout=30).json()
    assert described["versions"][0]["created_by"].startswith("admin"), described


def test_the_edge_page_is_readable_at_phone_width(kernel, admin, browser):
    deployed = requests.post(kernel.url + FUNCTIONS, json={"name": "narrow", "files": {"index.ts": GREETER}},
                             headers=bearer(admin["pair"]["access_token"]), timeout=120)
    assert deployed.status_code == 201, deployed.text
    browser.set_window_size(390, 844)
    try:
        sign_in(browser, kernel, admin["pair"], f"plugins/edge/functions/{PORTAL}/narrow")
        wait_heading(browser, "Edge functions")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=edge-versions] tbody tr[data-version]"), message="the function's panel")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the Edge page scrolls sideways by {overflow}px at 390px"
    finally:
        browser.set_window_size(1280, 800)
