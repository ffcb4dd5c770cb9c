"""The Studio's plugin pages in a real browser against the real kernel with the Database
and Vault plugins: the SQL console (a command tag; a syntax error's SQLSTATE and
position), the table browser (rows and total, a filter, a row edited and persisted), and
the Vault (a secret created with a step-up, its value absent from the page until
revealed, a new version, reveal and hide). Setup, TOTP enrolment and the portal go over
HTTP (test_studio.py covers those screens)."""

from __future__ import annotations

import secrets
import time

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from instance_setup import create_portal, set_up_instance
from meltybase_kernel import DATABASE_AND_VAULT_TOML
from studio_driver import click, fill, labelled, next_totp, set_value, text_of, wait_field_error, wait_click, wait_for, wait_heading, wait_text

EMAIL = "lin@example.com"
PASSWORD = "Copper-Meadow-Harbour-51"
PORTAL = "shop"
SECRET_NAME = "STRIPE_KEY"
SECRET_V1 = "sk_test_" + secrets.token_hex(12)
SECRET_V2 = "sk_live_" + secrets.token_hex(12)

PLUGINS_TOML = DATABASE_AND_VAULT_TOML


@pytest.fixture(scope="module")
def kernel(module_kernel_factory):
    return module_kernel_factory(extra_toml=PLUGINS_TOML, env={"MELTYBASE_MASTER_KEY": secrets.token_hex(32)})


@pytest.fixture(scope="module")
def admin(kernel):
    """An initialized instance with one admin who has TOTP: `{pair (aal2), secret, step}`."""
    return initialize_with_totp_admin(kernel)


def initialize_with_totp_admin(kernel):
    """Sets up `kernel` (evaluation license), enrols the admin's TOTP and creates PORTAL with
    the database and vault: `{pair (aal2), secret, step}`. Also used by screenshots.py."""
    admin = set_up_instance(kernel, EMAIL, PASSWORD)
    create_portal(kernel, admin["pair"]["access_token"], PORTAL, ["database", "vault"], f"/p/{PORTAL}/rest/v1/")
    return admin


def sign_in_with(browser, kernel, pair, path):
    """Puts `pair` in the tab's session (as the login would) and opens /dashboard/<path>."""
    browser.get(kernel.url + "/dashboard/login")
    wait_for(browser, lambda d: text_of(d, "h1"), message="a screen")
    browser.execute_script(
        "sessionStorage.setItem('meltybase.session', JSON.stringify(Object.assign(arguments[0], {mfa_required: false, email: arguments[1]})))",
        pair, EMAIL)
    browser.get(kernel.url + "/dashboard/" + path)


def sql(kernel, token, query):
    answer = requests.post(f"{kernel.url}/p/{PORTAL}/sql/v1/query", json={"query": query},
                           headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def run_sql(browser, query):
    set_value(browser, "SQL", query)
    click(browser, "Run")


def rows_of(browser):
    return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")[:-1]]
            for row in browser.find_elements(By.CSS_SELECTOR, "[data-test=db-rows] tbody tr[data-key]")]


def test_database_page_console_browse_filter_edit(kernel, admin, browser):
    token = admin["pair"]["access_token"]
    # The old address (database) leads to the Database plugin's page (ABI 1.5: plugins/database/tables).
    sign_in_with(browser, kernel, admin["pair"], "database")
    wait_heading(browser, "Database")
    assert Select(labelled(browser, "Portal")).first_selected_option.text == PORTAL
    wait_text(browser, "[data-test=db-tables]", "No tables")

    # The console: a command tag, then a syntax error's SQLSTATE, message and position.
    run_sql(browser, "create table t(id int primary key, name text); insert into t values (1,'a'),(2,'b')")
    assert "INSERT" in wait_text(browser, "[data-test=sql-command]", "INSERT")
    run_sql(browser, "select id,\n  from t")
    error = wait_text(browser, "[data-test=sql-error]", "42601")
    assert "syntax error" in error
    assert text_of(browser, "[data-test=sql-sqlstate]") == "42601"
    assert "At character 14 (line 2, column 3)" in text_of(browser, "[data-test=sql-position]")
    assert text_of(browser, "[data-test=sql-error] mark") == "f"
    assert text_of(browser, "[data-test=sql-error] pre") == "  from t"
    # A query with rows shows them with their columns.
    run_sql(browser, "select id, name from t order by id")
    wait_text(browser, "[data-test=sql-command]", "SELECT")
    assert "name" in wait_text(browser, "[data-test=sql-rows] thead", "NAME").lower()
    assert text_of(browser, "[data-test=sql-rows] tbody") == "1\ta\n2\tb"

    # The new table appears (the schema cache reloads after DDL); open it.
    wait_click(browser, lambda d: d.find_elements(By.LINK_TEXT, "t"), "table t in the list")
    wait_for(browser, lambda d: d.current_url.endswith(f"/dashboard/plugins/database/tables/{PORTAL}/t"))
    wait_text(browser, "[data-test=db-page-info]", "of 2")
    assert text_of(browser, "[data-test=db-page-info]") == "Rows 1 to 2 of 2"
    assert rows_of(browser) == [["1", "a"], ["2", "b"]]

    # A filter: name = eq.b → one row.
    Select(labelled(browser, "Column")).select_by_visible_text("name")
    Select(labelled(browser, "Operator")).select_by_value("eq")
    fill(browser, "Value", "b")
    click(browser, "Add filter")
    wait_text(browser, "[data-test=db-page-info]", "of 1")
    assert rows_of(browser) == [["2", "b"]]
    assert "name=eq.b" in text_of(browser, "[data-test=db-filters]")

    # Edit row 2's name: persisted (read back over SQL).
    click(browser, "Edit")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=db-row-editor]"))
    fill(browser, "name", "bee", scope=browser.find_element(By.CSS_SELECTOR, "[data-test=db-row-editor]"))
    click(browser, "Save row")
    wait_text(browser, "[data-test=db-saved]", "Row saved")
    assert sql(kernel, token, "select name from t where id = 2")["rows"] == [["bee"]]
    # The filter still says name = b: the edited row left the page.
    wait_text(browser, "[data-test=db-rows]", "No rows match")
    wait_click(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "button[aria-label='Remove filter name eq b']"), "the Remove filter name eq b button")
    wait_text(browser, "[data-test=db-page-info]", "of 2")
    assert rows_of(browser) == [["1", "a"], ["2", "bee"]]

    # A refused edit shows PostgREST's error (a duplicate key).
    wait_click(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "button[aria-label='Edit row id 2']"), "the Edit row id 2 button")
    editor = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-test=db-row-editor]"))
    fill(browser, "id", "1", scope=editor)
    click(browser, "Save row")
    assert "23505" in wait_text(browser, "[data-test=db-row-editor] .notice", "23505")
    click(browser, "Cancel")

    # Paging: 30 rows, 10 a page.
    sql(kernel, token, "insert into t select g, 'n' || g from generate_series(3, 30) g")
    Select(labelled(browser, "Rows per page")).select_by_visible_text("10")
    wait_text(browser, "[data-test=db-page-info]", "Rows 1 to 10 of 30")
    click(browser, "Next page")
    wait_text(browser, "[data-test=db-page-info]", "Rows 11 to 20 of 30")
    assert rows_of(browser)[0] == ["11", "n11"]
    click(browser, "Previous page")
    wait_text(browser, "[data-test=db-page-info]", "Rows 1 to 10 of 30")

    # Ctrl+Enter runs the console; a change there reloads the open table.
    console = labelled(browser, "SQL")
    console.clear()
    console.send_keys("delete from t where id > 20")
    console.send_keys(Keys.CONTROL, Keys.ENTER)
    wait_text(browser, "[data-test=sql-command]", "DELETE")
    wait_text(browser, "[data-test=db-page-info]", "Rows 1 to 10 of 20")

    # Insert a row, then delete it (after the confirmation).
    click(browser, "New row")
    editor = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-test=db-row-editor]"))
    fill(browser, "id", "99", scope=editor)
    fill(browser, "name", "zed", scope=editor)
    click(browser, "Insert row")
    wait_text(browser, "[data-test=db-saved]", "Row inserted")
    assert sql(kernel, token, "select name from t where id = 99")["rows"] == [["zed"]]
    wait_text(browser, "[data-test=db-page-info]", "of 21")
    Select(labelled(browser, "Direction")).select_by_value("desc")
    wait_for(browser, lambda d: rows_of(d) and rows_of(d)[0] == ["99", "zed"], message="row 99 first")
    wait_click(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "button[aria-label='Edit row id 99']"), "the Edit row id 99 button")
    click(browser, "Delete row")
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_text(browser, "[data-test=db-page-info]", "of 20")
    assert sql(kernel, token, "select count(*) from t where id = 99")["rows"] == [[0]]

    # An expired or refused access token on a plugin route is refreshed, not a sign-out.
    before = browser.execute_script("return JSON.parse(sessionStorage.getItem('meltybase.session')).refresh_token")
    browser.execute_script("""const s = JSON.parse(sessionStorage.getItem('meltybase.session'));
        s.access_token = 'eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.bm90LWEtc2lnbmF0dXJl';
        sessionStorage.setItem('meltybase.session', JSON.stringify(s));""")
    click(browser, "Reload tables")
    wait_for(browser, lambda d: d.execute_script(
        "return (JSON.parse(sessionStorage.getItem('meltybase.session')) || {}).refresh_token") not in (before, None), message="a refreshed session")
    assert browser.find_elements(By.LINK_TEXT, "t") and "/dashboard/plugins/database/tables/" in browser.current_url
    admin["pair"] = browser.execute_script("return JSON.parse(sessionStorage.getItem('meltybase.session'))")


def test_vault_page_create_version_reveal_hide(kernel, admin, browser):
    # A session that has only given the password: the page asks for the code, then loads at AAL2.
    pair = requests.post(kernel.url + "/v1/admin/login", json={"email": EMAIL, "password": PASSWORD}, timeout=30).json()
    assert pair["aal"] == "aal1" and pair["mfa_required"] is True
    sign_in_with(browser, kernel, pair, f"plugins/vault/secrets/{PORTAL}")
    dialog = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "dialog.stepup[open]"))
    code, admin["step"] = next_totp(admin["secret"], after_step=admin["step"])
    fill(browser, "Authentication code", code, scope=dialog)
    click(browser, "Verify", scope=dialog)
    wait_heading(browser, "Vault")
    assert text_of(browser, "[data-test=aal]") == "AAL2"
    wait_text(browser, "[data-test=vault-secrets]", "No secrets yet")
    assert "meltybase vault rotate-master" in browser.page_source
    assert f"meltybase vault rotate-portal-key --portal {PORTAL}" in browser.page_source

    fill(browser, "Name", SECRET_NAME)
    fill(browser, "Value", SECRET_V1)
    fill(browser, "Description (optional)", "test key")
    click(browser, "Create secret")
    row = f"[data-test=vault-secrets] tr[data-secret={SECRET_NAME}]"
    wait_text(browser, row, SECRET_NAME)
    assert text_of(browser, f"{row} [data-test=secret-version]") == "1"
    assert "test key" in text_of(browser, row)
    assert SECRET_V1 not in browser.page_source
    assert labelled(browser, "Value").get_attribute("value") == ""

    # A new version (rotation of the secret).
    click(browser, "New version")
    fill(browser, f"New value for {SECRET_NAME}", SECRET_V2)
    click(browser, "Save new version")
    wait_for(browser, lambda d: text_of(d, f"{row} [data-test=secret-version]") == "2", message="version 2")
    assert "version 2" in text_of(browser, ".notice")
    assert SECRET_V1 not in browser.page_source and SECRET_V2 not in browser.page_source

    click(browser, "History")
    versions = wait_text(browser, "[data-test=secret-versions] tbody", "admin:")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in browser.find_elements(By.CSS_SELECTOR, "[data-test=secret-versions] tbody tr")] == ["2", "1"]
    click(browser, "Close history")

    # Reveal shows the current value; Hide removes it from the page.
    click(browser, "Reveal")
    assert wait_text(browser, "[data-test=secret-value]", SECRET_V2) == SECRET_V2
    assert SECRET_V1 not in browser.page_source
    click(browser, "Hide")
    wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-test=secret-value]"))
    assert SECRET_V2 not in browser.page_source

    # The keyboard reaches Reveal (labelled buttons) too.
    reveal = browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Reveal {SECRET_NAME}']")
    reveal.send_keys(Keys.ENTER)
    wait_text(browser, "[data-test=secret-value]", SECRET_V2)
    reveal.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: SECRET_V2 not in d.page_source)

    # A taken name is refused next to the name.
    fill(browser, "Name", SECRET_NAME)
    fill(browser, "Value", "x")
    click(browser, "Create secret")
    assert "exist" in wait_field_error(browser, "Name").lower()

    # Delete (soft), then purge from the deleted list.
    click(browser, "Delete")
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_text(browser, "[data-test=vault-secrets]", "No secrets yet")
    labelled(browser, "Show deleted secrets").click()
    wait_text(browser, row, "deleted")
    assert "Reveal" not in text_of(browser, row)
    click(browser, "Purge")
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_text(browser, "[data-test=vault-secrets]", "No secrets yet")

    # The reads were audited.
    audit = requests.get(kernel.url + "/v1/audit?action=vault.secret.read", timeout=30,
                         headers={"authorization": f"Bearer {admin['pair']['access_token']}"}).json()
    assert len(audit["entries"]) == 2


def test_plugin_pages_are_readable_at_phone_width(kernel, admin, browser):
    browser.set_window_size(390, 844)
    try:
        for path, title in ((f"plugins/database/tables/{PORTAL}/t", "Database"), (f"plugins/vault/secrets/{PORTAL}", "Vault")):
            browser.get(kernel.url + "/dashboard/" + path)
            wait_heading(browser, title)
            wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=db-rows] tbody tr, [data-test=vault-secrets] tbody tr"))
            overflow = browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390px"
    finally:
        browser.set_window_size(1280, 800)


def test_overview_lists_every_route_prefix_of_a_plugin(kernel, admin, browser):
    """The Database plugin serves rest, auth and sql: the overview names all three."""
    sign_in_with(browser, kernel, admin["pair"], "overview")
    wait_heading(browser, "Overview")
    wait_text(browser, "[data-test=plugins-table]", "database")
    row = browser.execute_script(
        "return [...document.querySelectorAll('[data-test=plugins-table] tbody tr')]"
        ".map(r => r.innerText).find(t => t.startsWith('database')) || ''")
    for prefix in ("rest", "auth", "sql"):
        assert f"/p/<portal>/{prefix}" in row, row
    assert "/p/<portal>/vault" in text_of(browser, "[data-test=plugins-table]")
    # Health (ABI 1.5): the Database plugin asks Postgres; the Vault reports none.
    assert text_of(browser, "[data-test=plugin-health][data-plugin=database]").startswith("ok"), row
    assert text_of(browser, "[data-test=plugin-health][data-plugin=vault]") == "not reported"
