"""The Intelligence plugin's Studio pages in a real browser against the real kernel (the
Database, Vault and Intelligence plugins, one portal enabling all three), used the way a new
admin would: the SQL console's diagnosis of a failed statement and its "Use this fix"; the
Sentient SQL page's RLS proposal for an owner table (the rows user A, user B and anon saw),
applied and then listed as a migration; the Knowledge Mesh page's collections, counts and a
search; the Agents page with no provider, then runs scripted through the local
OpenAI-compatible test server (Tests/Support/openai_server.py): a user's finished run and its
steps, an admin's run waiting on a SQL write that the page approves (then followed live), and a
running run cancelled from the page. Also every page at phone width. Setup, TOTP, the portal,
tables, collections and runs go over HTTP.

JavaScript errors: a script added to every new document (CDP) records uncaught errors and
unhandled rejections in `window.__pageErrors`; each test checks the list stays empty."""

from __future__ import annotations

import re
import secrets
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By

from instance_setup import set_up_instance
from studio_driver import click, fill, labelled, set_value, text_of, wait_click, wait_for, wait_heading, wait_text

sys.path.insert(0, str(Path(__file__).resolve().parent / "intelligence"))

import llmkit  # noqa: E402

EMAIL = "iris@example.com"
PASSWORD = "Lantern-Orchard-Quartz-73"
PORTAL = "brainy"
USER_PASSWORD = "Willow-Granite-Sparrow-28"

TOML = """
[plugins.database]
path = "libDatabasePlugin.so"
required = true

[plugins.vault]
path = "libVaultPlugin.so"
required = true

[plugins.intelligence]
path = "libIntelligencePlugin.so"
required = true
egress_hosts = ["{llm_host}"]

[rate_limit]
per_client = {{ rate = 100000, burst = 100000 }}
per_portal = {{ rate = 100000, burst = 100000 }}
"""

# Uncaught errors and unhandled rejections of every document the tab opens.
ERROR_COLLECTOR = """
window.__pageErrors = [];
addEventListener('error', (event) => {
  if (event.error || event.message) window.__pageErrors.push(`${event.message} (${event.filename}:${event.lineno})`);
});
addEventListener('unhandledrejection', (event) => {
  const reason = event.reason;
  window.__pageErrors.push(`unhandled rejection: ${reason && (reason.stack || reason.message) || reason}`);
});
"""


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm():
    server = llmkit.start_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kernel(module_kernel_factory, llm):
    return module_kernel_factory(extra_toml=TOML.format(llm_host=llm.host), env={"MELTYBASE_MASTER_KEY": secrets.token_hex(32)})


@pytest.fixture(scope="module")
def admin(kernel):
    """The admin (`pair` at aal2) and the portal's keys (`anon`, `service`)."""
    instance = set_up_instance(kernel, EMAIL, PASSWORD)
    pair = instance["pair"]
    created = requests.post(kernel.url + "/v1/hub/portals", json={"name": PORTAL, "plugins": ["database", "vault", "intelligence"]},
                            headers=bearer(pair["access_token"]), timeout=60)
    assert created.status_code in (200, 201), created.text
    body = created.json()
    keys = {"anon": body.get("anon_key") or body["keys"]["anon"],
            "service": body.get("service_role_key") or body["keys"]["service_role"]}
    deadline = time.monotonic() + 30  # the kernel picks the portal up from its NOTIFY a moment later
    for path in ("/rest/v1/", "/vectors/v1/collections"):
        while requests.get(f"{kernel.url}/p/{PORTAL}{path}", timeout=30).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.1)
    return {"pair": pair, **keys}


@pytest.fixture(scope="module")
def watched(module_browser):
    """The module's browser with the error collector on every new document."""
    added = module_browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_COLLECTOR})
    yield module_browser
    module_browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


@pytest.fixture
def browser(watched):
    """The watched browser for one test (a failure saves its screenshot); at the end of the
    test the page must have had no uncaught JavaScript error."""
    yield watched
    errors = page_errors(watched)
    assert not errors, f"JavaScript errors on {watched.current_url}: {errors}"


# --- helpers ----------------------------------------------------------------------------------


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def page_errors(browser) -> list[str]:
    return browser.execute_script("return window.__pageErrors || []")


def sign_in(browser, kernel, pair, path):
    """Puts `pair` in the tab's session (as the login would) and opens /dashboard/<path>."""
    browser.get(kernel.url + "/dashboard/login")
    browser.execute_script("sessionStorage.clear()")
    browser.get(kernel.url + "/dashboard/login")
    wait_for(browser, lambda d: text_of(d, "h1"), message="a screen")
    browser.execute_script(
        "sessionStorage.setItem('meltybase.session', JSON.stringify(Object.assign(arguments[0], {mfa_required: false, email: arguments[1]})))",
        pair, EMAIL)
    browser.get(kernel.url + "/dashboard/" + path)


def sql(kernel, admin, query):
    """Runs `query` in the portal's SQL console API as the admin; the answer."""
    answer = requests.post(f"{kernel.url}/p/{PORTAL}/sql/v1/query", json={"query": query},
                           headers=bearer(admin["pair"]["access_token"]), timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def portal_call(kernel, admin, method, path, body=None, token=None, key=None):
    """`method` /p/<portal>/<path> with the admin's token (or `token`, with `key` as apikey)."""
    headers = bearer(token or admin["pair"]["access_token"])
    if key:
        headers["apikey"] = key
    return requests.request(method, f"{kernel.url}/p/{PORTAL}/{path}", json=body, headers=headers, timeout=60)


def main_text(browser) -> str:
    return text_of(browser, "main")


def no_page_error(browser):
    """The page rendered without the shell's error notice."""
    assert not browser.find_elements(By.CSS_SELECTOR, "main > .notice-error"), text_of(browser, "main > .notice-error")


def overflow(browser) -> int:
    return browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")


def too_wide(browser) -> list[str]:
    """What reaches past the viewport's right edge (for the message): the innermost
    elements, and text that runs out of its box."""
    return browser.execute_script("""
        const width = document.documentElement.clientWidth;
        const name = (e) => `${e.tagName.toLowerCase()}${e.dataset.test ? `[data-test=${e.dataset.test}]` : ''}${e.className ? '.' + e.className : ''}`;
        // Inside a scrolling or clipping box (the navigation row, .table-scroll) is fine.
        const clipped = (e) => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) if (getComputedStyle(p).overflowX !== 'visible') return true; return false; };
        const wide = [...document.body.querySelectorAll('*')].filter((e) => e.getBoundingClientRect().right > width + 0.5 && !clipped(e));
        const found = wide.filter((e) => !wide.some((o) => o !== e && e.contains(o)))
          .map((e) => `${name(e)} right=${Math.round(e.getBoundingClientRect().right)}: ${(e.innerText || '').slice(0, 80)}`);
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const range = document.createRange();
          range.selectNodeContents(node);
          const right = range.getBoundingClientRect().right;
          if (right > width + 0.5 && !clipped(node)) found.push(`text in ${name(node.parentElement)} right=${Math.round(right)}: ${node.textContent.slice(0, 80)}`);
        }
        return found.slice(0, 10);""")


# --- 1. the SQL console's diagnosis -------------------------------------------------------------


def test_the_sql_console_diagnoses_a_typo_and_its_fix_runs(kernel, admin, browser):
    sql(kernel, admin, "create table items (id int primary key, name text not null); insert into items values (1, 'anvil'), (2, 'bellows')")
    sign_in(browser, kernel, admin["pair"], f"plugins/database/tables/{PORTAL}")
    wait_heading(browser, "Database")
    wait_text(browser, "[data-test=db-tables]", "items")

    set_value(browser, "SQL", "select nmae from items order by id")
    click(browser, "Run")
    # The error, then the diagnosis with a fix that was checked with EXPLAIN.
    assert "42703" in wait_text(browser, "[data-test=sql-error]", "nmae")
    assert text_of(browser, "[data-test=sql-sqlstate]") == "42703"
    diagnosis = wait_text(browser, "[data-test=sql-diagnosis]", "undefined_column")
    assert "Diagnosing" not in diagnosis
    assert "name" in diagnosis and "nmae" in diagnosis, diagnosis
    fixes = wait_text(browser, "[data-test=sql-fixes]", "checked with EXPLAIN")
    first_fix = text_of(browser, "[data-test=sql-fixes] li pre")
    assert first_fix == "select name from items order by id", fixes
    assert "catalog" in fixes
    # Without a provider the page says the model was not used.
    assert "no provider" in diagnosis.lower(), diagnosis
    # Nothing runs by itself: the editor still holds the failed statement.
    assert labelled(browser, "SQL").get_attribute("value") == "select nmae from items order by id"

    # "Use this fix" puts the corrected statement into the editor; running it succeeds.
    wait_click(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=sql-use-fix]"), "the Use this fix button")
    assert browser.find_element(By.CSS_SELECTOR, "[data-test=sql-use-fix]").text == "Use this fix"
    wait_for(browser, lambda d: labelled(d, "SQL").get_attribute("value") == first_fix, message="the fix in the editor")
    assert browser.switch_to.active_element.get_attribute("id") == labelled(browser, "SQL").get_attribute("id")
    click(browser, "Run")
    wait_text(browser, "[data-test=sql-command]", "SELECT")
    assert "2 rows" in text_of(browser, "[data-test=sql-command]")
    assert text_of(browser, "[data-test=sql-rows] tbody") == "anvil\nbellows"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-test=sql-error], [data-test=sql-diagnosis]")


# --- 2. Sentient SQL: an RLS proposal, tried and applied -------------------------------------------


def test_sentient_sql_proposes_tries_and_applies_owner_policies(kernel, admin, browser):
    sql(kernel, admin, "create table todos (id bigserial primary key, user_id uuid not null references auth.users(id), task text not null)")
    sign_in(browser, kernel, admin["pair"], f"plugins/intelligence/sentient-sql/{PORTAL}")
    wait_heading(browser, "Sentient SQL")
    section = "[data-test=rls-proposals] section[aria-label='public.todos']"
    wait_text(browser, section, "public.todos")
    no_page_error(browser)
    card = text_of(browser, section)
    assert "owner" in text_of(browser, f"{section} h2 code"), card
    assert "ENABLE ROW LEVEL SECURITY" in text_of(browser, f"{section} pre")
    assert "(SELECT auth.uid()) = user_id" in text_of(browser, f"{section} pre")

    # The trial: the rows user A, user B and anon saw.
    assert text_of(browser, f"{section} [data-test=rls-trial] caption") == "Trial passed: each identity saw what it should."
    views = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((r) => [...r.cells].map((c) => c.innerText))",
        f"{section} [data-test=rls-trial] tbody tr")
    by_identity = {row[0]: row for row in views}
    assert set(by_identity) == {"User A", "User B", "anon"}, views
    assert by_identity["User A"][1:3] == ["1", "User A: 1"], views
    assert by_identity["User B"][1:3] == ["1", "User B: 1"], views
    assert by_identity["anon"][1:3] == ["0", "—"], views
    assert all(row[4] == "✓" for row in views), views
    assert "User A was refused writing a row for user B." in card

    # Apply (the page asks no confirmation; accept one should it appear).
    click(browser, "Apply to public.todos")
    try:
        wait_for(browser, lambda d: d.switch_to.alert, timeout=1).accept()
    except Exception:  # no confirmation dialog
        pass
    status = wait_text(browser, "main .notice", "Applied as migration")
    migration = re.search(r"Applied as migration (\S+_rls_public_todos\.sql)\.", status)
    assert migration, status
    # The table has policies now: its proposal is gone from the page.
    wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, section), message="the todos proposal gone")

    listed = portal_call(kernel, admin, "GET", "intelligence/v1/rls/migrations")
    assert listed.status_code == 200, listed.text
    names = [item["name"] for item in listed.json()["migrations"]]
    assert names == [migration.group(1)], names
    assert sql(kernel, admin, "select count(*) from pg_policies where tablename = 'todos'")["rows"] == [[4]]
    # Reloading keeps it gone (the page reads the proposals again).
    click(browser, "Reload proposals")
    wait_for(browser, lambda d: "Loading" not in text_of(d, "[data-test=rls-proposals]"), message="the proposals")
    assert not browser.find_elements(By.CSS_SELECTOR, section)


# --- 3. Knowledge Mesh: collections and a search ---------------------------------------------------


def test_knowledge_mesh_lists_a_collection_and_searches_it(kernel, admin, browser):
    created = portal_call(kernel, admin, "POST", "vectors/v1/collections", {"name": "faq", "dimension": 3, "metric": "cosine"})
    assert created.status_code == 201, created.text
    entries = [
        {"id": "refund", "vector": [1, 0, 0], "metadata": {"topic": "billing"}, "content": "How to get a refund"},
        {"id": "invoice", "vector": [0.8, 0.2, 0], "metadata": {"topic": "billing"}, "content": "Invoices each month"},
        {"id": "shipping", "vector": [0, 1, 0], "metadata": {"topic": "shipping"}, "content": "Shipping times"},
        {"id": "password", "vector": [0, 0, 1], "metadata": {"topic": "account"}, "content": "Reset your password"},
    ]
    upserted = portal_call(kernel, admin, "POST", "vectors/v1/collections/faq/upsert", {"entries": entries})
    assert upserted.status_code == 200 and upserted.json()["upserted"] == 4, upserted.text

    sign_in(browser, kernel, admin["pair"], f"plugins/intelligence/vectors/{PORTAL}")
    wait_heading(browser, "Knowledge Mesh")
    wait_for(browser, lambda d: text_of(d, "[data-test=collection-count]") == "4", message="faq with 4 entries")
    no_page_error(browser)
    row = browser.execute_script(
        "return [...document.querySelector('[data-test=collection-count]').closest('tr').cells].map((c) => c.innerText)")
    assert row[:5] == ["faq", "3", "cosine", "service_role", "4"], row
    assert "publishing off" in text_of(browser, "[data-test=mesh-membership]")

    def results():
        return browser.execute_script(
            "const form = document.querySelector('form[aria-label=\"Search a collection\"]');"
            "return [...form.closest('.card').querySelectorAll('tbody tr')].map((r) => [...r.cells].map((c) => c.innerText))")

    # A vector: the nearest first, with distances.
    assert labelled(browser, "Collection").get_attribute("value") == "faq"
    fill(browser, "Search", "[0.9, 0.1, 0]")
    fill(browser, "k", "2")
    click(browser, "Search")
    wait_for(browser, lambda d: len(results()) == 2, message="two results")
    found = results()
    # cosine distance to [0.9, 0.1, 0]: refund 0.0061, invoice 0.0090
    assert [r[0] for r in found] == ["refund", "invoice"], found
    assert all(re.fullmatch(r"\d\.\d{4}", r[1]) for r in found), found
    assert abs(float(found[0][1]) - 0.0061) < 0.0005 and float(found[0][1]) < float(found[1][1]), found
    assert found[0][2] == '{"topic":"billing"}' and found[0][3] == "How to get a refund", found

    # A metadata filter narrows it.
    fill(browser, "k", "10")
    fill(browser, "Filter", '{"topic": "shipping"}')
    click(browser, "Search")
    wait_for(browser, lambda d: [r[0] for r in results()] == ["shipping"], message="only the shipping entry")
    assert results()[0][3] == "Shipping times"

    # Words without a provider: the page shows the plugin's reason, not a JS error.
    fill(browser, "Filter", "")
    fill(browser, "Search", "refund please")
    click(browser, "Search")
    message = wait_for(browser, lambda d: text_of(d, "main .notice"), message="a notice")
    assert "provider" in message.lower(), message


# --- 4. Agents --------------------------------------------------------------------------------


def agent_user(kernel, admin) -> dict:
    """A confirmed portal user (auth admin API), signed in: `{id, token}`."""
    email = f"agent-user-{uuid.uuid4().hex[:8]}@example.com"
    created = portal_call(kernel, admin, "POST", "auth/v1/admin/users",
                          {"email": email, "password": USER_PASSWORD, "email_confirm": True}, token=admin["service"], key=admin["service"])
    assert created.status_code in (200, 201), created.text
    signed = requests.post(f"{kernel.url}/p/{PORTAL}/auth/v1/token?grant_type=password", json={"email": email, "password": USER_PASSWORD},
                           headers={"apikey": admin["anon"]}, timeout=60)
    assert signed.status_code == 200, signed.text
    return {"id": signed.json()["user"]["id"], "token": signed.json()["access_token"]}


def wait_run(kernel, admin, run_id, statuses, token=None, key=None, timeout=60):
    deadline = time.monotonic() + timeout
    run = {}
    while time.monotonic() < deadline:
        answer = portal_call(kernel, admin, "GET", f"agents/v1/runs/{run_id}", token=token, key=key)
        if answer.status_code == 200:
            run = answer.json()
            if run["status"] in statuses:
                return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {statuses}: {run}")


def run_rows(browser) -> list[list[str]]:
    return browser.execute_script(
        "const t = document.querySelector('table[aria-label=\"Agent runs\"]');"
        "return t ? [...t.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.innerText)) : []")


def steps_shown(browser) -> list[str]:
    return browser.execute_script("return [...document.querySelectorAll('.agent-tree > li > ol.agent-steps > li')].map((li) => li.innerText)")


def test_agents_page_without_a_provider_lists_no_runs(kernel, admin, browser):
    refused = portal_call(kernel, admin, "POST", "agents/v1/runs", {"goal": "count the todos"})
    assert refused.status_code == 409 and refused.json()["code"] == "model_provider_required", refused.text
    sign_in(browser, kernel, admin["pair"], f"plugins/intelligence/agents/{PORTAL}")
    wait_heading(browser, "Agents")
    wait_text(browser, "main", "No runs yet")
    no_page_error(browser)
    assert "POST /p/<portal>/agents/v1/runs" in main_text(browser)
    assert not run_rows(browser)


def test_agents_page_shows_a_users_run_and_its_steps(kernel, admin, browser, llm):
    configured = portal_call(kernel, admin, "PUT", "intelligence/v1/provider", llmkit.provider_settings(llm, secret=None))
    assert configured.status_code == 200, configured.text
    llm.reset()
    llm.script([
        {"tool_calls": [{"name": "remember", "arguments": {"key": "colour", "text": "the user likes teal"}, "id": "mem-1"}]},
        {"content": "Noted: you like teal."},
    ])
    user = agent_user(kernel, admin)
    started = portal_call(kernel, admin, "POST", "agents/v1/runs", {"goal": "Remember that I like teal"}, token=user["token"], key=admin["anon"])
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    run = wait_run(kernel, admin, run_id, {"succeeded", "failed", "budget_exceeded"}, token=user["token"], key=admin["anon"])
    assert run["status"] == "succeeded", run

    sign_in(browser, kernel, admin["pair"], f"plugins/intelligence/agents/{PORTAL}")
    wait_heading(browser, "Agents")
    wait_for(browser, lambda d: run_rows(d), message="the runs table")
    no_page_error(browser)
    (row,) = run_rows(browser)
    assert row[0] == "Remember that I like teal" and row[1] == "succeeded", row
    assert row[2] == user["id"], row
    assert row[3] == f"{run['used']['steps']} / {run['budget']['steps']}", row

    # The run's page: its figures, the answer and each step.
    click(browser, "Remember that I like teal")
    wait_for(browser, lambda d: d.current_url.endswith(f"/agents/{PORTAL}/{run_id}"), message="the run's address")
    wait_text(browser, ".agent-tree", "Noted: you like teal.")
    assert text_of(browser, ".agent-tree blockquote") == "Noted: you like teal."
    assert "succeeded" in text_of(browser, ".agent-tree > li > p")
    steps = steps_shown(browser)
    assert [re.match(r"\d+\. (\w+)", s).group(1) for s in steps] == ["plan", "tool_call", "observation", "answer"], steps
    assert "remember(" in steps[0] and "teal" in steps[0], steps
    assert steps[1].startswith("2. tool_call remember") and "teal" in steps[1], steps
    assert "✗" not in steps[2], steps
    assert steps[3] == "4. answer Noted: you like teal.", steps
    assert "Cancel run" not in main_text(browser)
    click(browser, "← All runs")
    wait_for(browser, lambda d: run_rows(d), message="the runs table again")


def test_agents_page_approves_a_waiting_sql_write(kernel, admin, browser, llm):
    sql(kernel, admin, "create table agent_log (msg text not null)")
    configured = portal_call(kernel, admin, "PUT", "intelligence/v1/provider", llmkit.provider_settings(llm, secret=None))
    assert configured.status_code == 200, configured.text
    llm.reset()
    statement = "insert into agent_log (msg) values ('written by the agent')"
    llm.script([
        {"tool_calls": [{"name": "sql_write", "arguments": {"sql": statement}, "id": "write-1"}]},
        # Slow enough that the reload right after the click still sees the run working:
        # the answer reaches the page through the run's live feed (SSE).
        {"content": "Logged one line.", "delay": 2},
    ])
    started = portal_call(kernel, admin, "POST", "agents/v1/runs", {"goal": "Log a line", "tools": ["sql_write"]})
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    wait_run(kernel, admin, run_id, {"waiting_approval", "succeeded", "failed"})

    sign_in(browser, kernel, admin["pair"], f"plugins/intelligence/agents/{PORTAL}/{run_id}")
    wait_heading(browser, "Agents")
    approval = wait_text(browser, ".agent-tree .approval", statement)
    no_page_error(browser)
    assert "waiting_approval" in text_of(browser, ".agent-tree > li > p")
    assert "Approve" in approval and "Reject" in approval
    assert "Cancel run" in main_text(browser)
    assert sql(kernel, admin, "select count(*) from agent_log")["rows"] == [[0]]

    click(browser, "Approve")
    # The page follows the run (reload after the decision, then the live feed) to its answer.
    wait_text(browser, ".agent-tree blockquote", "Logged one line.", timeout=60)
    wait_for(browser, lambda d: "succeeded" in text_of(d, ".agent-tree > li > p"), message="succeeded")
    assert not browser.find_elements(By.CSS_SELECTOR, ".agent-tree .approval")
    kinds = [re.match(r"\d+\. (\w+)", s).group(1) for s in steps_shown(browser)]
    assert "approval" in kinds and kinds[-1] == "answer", kinds
    assert any("approved" in s or "executed" in s for s in steps_shown(browser) if ". approval " in s), steps_shown(browser)
    assert sql(kernel, admin, "select msg from agent_log")["rows"] == [["written by the agent"]]
    # The page followed the run through its event feed.
    feeds = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.endsWith('/events'))")
    assert feeds == [f"{kernel.url}/p/{PORTAL}/agents/v1/runs/{run_id}/events"], feeds
    assert wait_run(kernel, admin, run_id, {"succeeded"})["answer"] == "Logged one line."


def test_agents_page_cancels_a_running_run(kernel, admin, browser, llm):
    llm.reset()
    llm.script([{"content": "too late", "delay": 30}])  # a model call that outlasts the test
    started = portal_call(kernel, admin, "POST", "agents/v1/runs", {"goal": "Think for a long time"})
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    wait_run(kernel, admin, run_id, {"running"})

    sign_in(browser, kernel, admin["pair"], f"plugins/intelligence/agents/{PORTAL}")
    wait_heading(browser, "Agents")
    wait_for(browser, lambda d: any(r[0] == "Think for a long time" for r in run_rows(d)), message="the run in the list")
    assert [r[1] for r in run_rows(browser) if r[0] == "Think for a long time"] == ["running"]
    click(browser, "Think for a long time")
    wait_text(browser, ".agent-tree > li > p", "running")
    click(browser, "Cancel run")
    wait_for(browser, lambda d: "cancelled" in text_of(d, ".agent-tree > li > p"), message="cancelled")
    wait_for(browser, lambda d: "Cancel run" not in main_text(d), message="no Cancel button once cancelled")
    assert wait_run(kernel, admin, run_id, {"cancelled"})["status"] == "cancelled"
    assert "too late" not in main_text(browser)


# --- phone width ------------------------------------------------------------------------------


def test_intelligence_pages_are_readable_at_phone_width(kernel, admin, browser, llm):
    """Each page with its content (and the console with a diagnosis whose model call failed:
    the provider's address in the reason) fits 390 px without scrolling sideways."""
    configured = portal_call(kernel, admin, "PUT", "intelligence/v1/provider", llmkit.provider_settings(llm, secret=None))
    assert configured.status_code == 200, configured.text
    llm.reset()  # nothing scripted: the diagnosis's model call fails with the provider's 500
    runs = portal_call(kernel, admin, "GET", "agents/v1/runs").json()["runs"]
    assert runs, "the agents tests left runs to show"
    pages = [
        (f"plugins/database/tables/{PORTAL}/items", "Database", "[data-test=db-rows] tbody tr[data-key]"),
        (f"plugins/intelligence/sentient-sql/{PORTAL}", "Sentient SQL", "[data-test=rls-proposals] section"),
        (f"plugins/intelligence/vectors/{PORTAL}", "Knowledge Mesh", "[data-test=collection-count]"),
        (f"plugins/intelligence/agents/{PORTAL}", "Agents", "table[aria-label='Agent runs'] tbody tr"),
        (f"plugins/intelligence/agents/{PORTAL}/{runs[-1]['id']}", "Agents", ".agent-tree .agent-steps li"),
    ]
    too_wide_pages = []
    browser.set_window_size(390, 844)
    try:
        sign_in(browser, kernel, admin["pair"], "overview")
        wait_heading(browser, "Overview")
        for path, title, content in pages:
            browser.get(kernel.url + "/dashboard/" + path)
            wait_heading(browser, title)
            wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, content), message=f"{content} on {path}")
            no_page_error(browser)
            if title == "Database":
                set_value(browser, "SQL", "select nmae from items")
                click(browser, "Run")
                wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=sql-fixes]"), message="the fixes")
                assert "Model: the model call failed" in wait_text(browser, "[data-test=sql-diagnosis]", "Model:")
            if overflow(browser) > 0:
                too_wide_pages.append(f"{path} scrolls sideways by {overflow(browser)}px at 390px: {too_wide(browser)}")
    finally:
        browser.set_window_size(1280, 800)
    assert not too_wide_pages, "\n".join(too_wide_pages)
