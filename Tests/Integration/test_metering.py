"""Usage metering, quotas and billing (issue 16, items 1-5) against the real binary and
Postgres: a known workload appears exactly in the hourly rollup and in the billing summary;
two kernels on one system database add their counts up; a hard quota refuses with 429
naming it and a soft one writes one audit entry; billing refuses an AAL1 admin; hostile
query parameters get 4xx JSON.

Every kernel flushes each second (`[metering] flush_interval_seconds = 1`). Figures are
compared as differences between two quiet moments (after a flush that follows the last
request), so the requests that prepared a portal do not blur them."""

from __future__ import annotations

import math
import secrets
import shutil
import sys
import time
import uuid
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

import dbkit  # noqa: E402
from instance_setup import post, set_up_instance  # noqa: E402

EMAIL = "meter@example.com"
VIEWER = "viewer@example.com"
PASSWORD = "correct horse battery staple"
USER_PASSWORD = "Meter-Password-42!"
MASTER_KEY = secrets.token_hex(32)
KEY_FILES = ("mfa-secret.key", "audit-signing.key", "audit-signing.pub", "evaluation-license-signing.key")
FLUSH = 1.0
QUIET = 3 * FLUSH + 1.0

HUB_TOML = """
[plugins.vault]
path = "libVaultPlugin.so"

[plugins.vault.config]
master_key_file = "vault-master.key"

[metering]
flush_interval_seconds = 1

[quotas.portals.capped]
requests_per_month = { hard = 12 }

[quotas.portals.warned]
requests_per_month = { soft = 10 }

[prices.indie]
currency = "EUR"
base_price = 10
requests = { unit_price = 0.5, unit_size = 10, included = 5 }
bytes_in = { unit_price = 0.25, unit_size = 100 }
active_auth_users = { unit_price = 2, included = 1 }
vault_reads = { unit_price = 0.1 }
"""


def write_master_key(kernel: dbkit.Kernel) -> None:
    key = kernel.directory / "vault-master.key"
    key.write_text(MASTER_KEY + "\n")
    key.chmod(0o600)


def joined_kernel(services: dbkit.Kernel, flush_seconds: int = 1) -> dbkit.Kernel:
    """Another kernel on the first one's Postgres and Redis, with its keys."""
    toml = HUB_TOML.replace("flush_interval_seconds = 1", f"flush_interval_seconds = {flush_seconds}") + f"""
[database]
url = "host={services.socket_directory()} port=5432 user=meltybase dbname=meltybase"

[redis]
url = "unix://{services.data_dir / 'redis' / 'redis.sock'}"
"""

    def prepare(kernel: dbkit.Kernel) -> None:
        write_master_key(kernel)
        for name in KEY_FILES:
            source = services.data_dir / name
            if source.exists():
                shutil.copy2(source, kernel.data_dir / name)

    return dbkit.Kernel(toml, prepare=prepare)


class Hub:
    """The module's kernels, admin tokens and portals."""

    def __init__(self, kernel: dbkit.Kernel):
        self.kernel = kernel
        admin = set_up_instance(kernel, EMAIL, PASSWORD)
        self.pair = admin["pair"]
        self.aal2 = admin["pair"]["access_token"]
        # A second admin without TOTP: a full session at AAL1 (not one waiting for its factor).
        created = post(kernel, "/v1/admin/users", {"email": VIEWER, "password": PASSWORD}, self.aal2)
        assert created.status_code in (200, 201), created.text
        viewer = post(kernel, "/v1/admin/login", {"email": VIEWER, "password": PASSWORD}).json()
        assert viewer["aal"] == "aal1" and not viewer.get("mfa_required"), viewer
        self.aal1 = viewer["access_token"]
        self.portals: dict[str, dbkit.Portal] = {}
        self.second: dbkit.Kernel | None = None

    def create(self, name: str, plugins: list[str]) -> dbkit.Portal:
        created = post(self.kernel, "/v1/hub/portals", {"name": name, "plugins": plugins}, self.aal2)
        assert created.status_code in (200, 201), created.text
        keys = created.json()
        portal = dbkit.Portal(self.kernel, name, keys["anon_key"], keys["service_role_key"])
        self.kernel._wait_for_portal(portal)
        self.portals[name] = portal
        return portal

    def get(self, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers["authorization"] = f"Bearer {token or self.aal1}"
        return requests.get(self.kernel.url + path, headers=headers, timeout=60, **kwargs)

    def usage(self, portal: str, granularity: str = "hour") -> dict[tuple[str, str], float]:
        """The portal's usage this month, summed over periods, by (metric, dimension)."""
        response = self.get("/v1/hub/usage", params={"portal": portal, "granularity": granularity, "from": month_start()})
        assert response.status_code == 200, response.text
        totals: dict[tuple[str, str], float] = defaultdict(float)
        for row in response.json()["rows"]:
            assert row["portal"] == portal
            totals[(row["metric"], row["dimension"])] += row["value"]
        return totals


def month_start() -> str:
    return time.strftime("%Y-%m-01T00:00:00Z", time.gmtime())


def period() -> str:
    return time.strftime("%Y-%m", time.gmtime())


def quiet() -> None:
    """Long enough for every kernel to flush what it counted."""
    time.sleep(QUIET)


def difference(after: dict, before: dict) -> dict:
    keys = set(after) | set(before)
    return {key: after.get(key, 0) - before.get(key, 0) for key in keys if after.get(key, 0) != before.get(key, 0)}


@pytest.fixture(scope="module")
def hub():
    kernel = dbkit.Kernel(HUB_TOML, prepare=write_master_key)
    started = [kernel]
    try:
        instance = Hub(kernel)
        instance.create("meter", ["database", "vault"])
        instance.create("capped", ["database"])
        instance.create("warned", ["database"])
        meter = instance.portals["meter"]
        meter.setup("create table items (id bigserial primary key, body text not null);", "items?select=id")
        stored = meter.request("POST", f"{meter.base}/vault/v1/secrets", json={"name": "API_KEY", "value": "s3cret"})
        assert stored.status_code in (200, 201), stored.text
        instance.second = joined_kernel(kernel)
        started.append(instance.second)
        on_second = dbkit.Portal(instance.second, "meter", meter.anon, meter.service)
        instance.second._wait_for_portal(on_second)
        instance.portals["meter-on-second"] = on_second
        yield instance
    finally:
        failures = []
        for running in reversed(started):
            if running.process.poll() is None:
                failures += dbkit.stop_and_check(running)
        assert not failures, "\n".join(failures)


def test_a_known_workload_appears_exactly_in_the_rollups_and_the_bill(hub):
    meter = hub.portals["meter"]
    quiet()
    before = hub.usage("meter")
    month_before = hub.usage("meter", "month")
    bytes_in = bytes_out = 0
    statuses: dict[str, int] = defaultdict(int)

    def note(response, sent: int = 0):
        nonlocal bytes_in, bytes_out
        bytes_in += sent
        bytes_out += len(response.content)
        statuses[f"{response.status_code // 100}xx"] += 1

    # N REST reads, inserts with known bodies, a 404.
    for _ in range(7):
        response = meter.rest("GET", "items?select=id")
        assert response.status_code == 200, response.text
        note(response)
    for index in range(4):
        body = ('{"body": "%s"}' % ("x" * (10 + index))).encode()
        response = meter.rest("POST", "items", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 201, response.text
        note(response, len(body))
    missing = meter.rest("GET", "no_such_table")
    assert missing.status_code == 404, missing.text
    note(missing)
    # K distinct users sign up (a session each) and sign in again: K active users, not 2K.
    users = [f"user-{uuid.uuid4().hex[:10]}@example.com" for _ in range(3)]
    for email in users:
        signed_up = meter.auth("POST", "signup", key=meter.anon, json={"email": email, "password": USER_PASSWORD})
        assert signed_up.status_code == 200, signed_up.text
        note(signed_up, len(signed_up.request.content))
        signed_in = meter.auth("POST", "token", key=meter.anon, params={"grant_type": "password"},
                               json={"email": email, "password": USER_PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        note(signed_in, len(signed_in.request.content))
    # Vault value reads.
    vault_statuses = 0
    vault_bytes = 0
    for _ in range(2):
        read = meter.request("GET", f"{meter.base}/vault/v1/secrets/API_KEY/value")
        assert read.status_code == 200, read.text
        vault_statuses += 1
        vault_bytes += len(read.content)
    quiet()
    changed = difference(hub.usage("meter"), before)
    expected = {("requests", f"database:{name}"): float(count) for name, count in statuses.items()}
    expected[("requests", "vault:2xx")] = float(vault_statuses)
    expected[("bytes_in", "database")] = float(bytes_in)
    expected[("bytes_out", "database")] = float(bytes_out)
    expected[("bytes_out", "vault")] = float(vault_bytes)
    expected[("vault_reads", "vault")] = 2.0
    # Sign-ups may send mail counters or similar: only the keys above are checked exactly.
    for key, value in expected.items():
        assert changed.get(key, 0) == value, (key, changed)
    unexpected = {key: value for key, value in changed.items() if key not in expected and key[0] in ("requests", "bytes_in", "bytes_out")}
    assert not unexpected, unexpected

    # The month's distinct users: exactly the three new ones.
    month = difference(hub.usage("meter", "month"), month_before)
    assert month.get(("active_auth_users", ""), 0) == 3.0, month

    # The day rollup holds the same figures as the hours summed.
    day = hub.usage("meter", "day")
    hours = hub.usage("meter")
    for key, value in hours.items():
        if key[0] != "db_size_bytes":
            assert day[key] == value, key

    # The bill, recomputed here from the monthly rollup and the price book.
    totals: dict[str, float] = defaultdict(float)
    for (metric, _), value in hub.usage("meter", "month").items():
        totals[metric] += value
    bill = hub.get("/v1/hub/billing", token=hub.aal2, params={"portal": "meter", "period": period()})
    assert bill.status_code == 200, bill.text
    summary = bill.json()
    assert summary["currency"] == "EUR" and summary["tier"] == "indie" and summary["period"] == period()
    prices = {"requests": (0.5, 10, 5), "bytes_in": (0.25, 100, 0), "active_auth_users": (2, 1, 1), "vault_reads": (0.1, 1, 0)}
    lines = {line["metric"]: line for line in summary["lines"]}
    assert set(lines) == set(prices)
    expected_total = Decimal(10)
    for metric, (price, unit, included) in prices.items():
        line = lines[metric]
        assert line["quantity"] == totals[metric], (metric, line, totals)
        billable = max(0.0, totals[metric] - included)
        units = math.ceil(billable / unit)
        amount = (Decimal(units) * Decimal(str(price))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert line["billable"] == billable and line["units"] == units, line
        assert Decimal(str(line["amount"])) == amount, (line, amount)
        expected_total += amount
    assert Decimal(str(summary["total"])) == expected_total
    assert lines["active_auth_users"]["quantity"] >= 3


def test_csv_export_matches_the_json_rows(hub):
    rows = hub.get("/v1/hub/usage", params={"portal": "meter", "from": month_start(), "granularity": "day"}).json()["rows"]
    csv = hub.get("/v1/hub/usage", params={"portal": "meter", "from": month_start(), "granularity": "day", "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv"), csv.text
    lines = csv.text.split("\r\n")
    assert lines[0] == "portal,period,metric,dimension,value"
    assert lines[-1] == "" and len(lines) - 2 == len(rows)
    first = rows[0]
    value = int(first["value"]) if float(first["value"]).is_integer() else first["value"]
    assert lines[1] == f'{first["portal"]},{first["period"]},{first["metric"]},{first["dimension"]},{value}'
    by_header = hub.get("/v1/hub/usage", params={"portal": "meter", "from": month_start(), "granularity": "day"},
                        headers={"accept": "text/csv"})
    assert by_header.text == csv.text


def test_two_kernels_on_one_database_add_their_counts(hub):
    first, second = hub.portals["meter"], hub.portals["meter-on-second"]
    quiet()
    before = hub.usage("meter")
    for _ in range(5):
        assert first.rest("GET", "items?select=id").status_code == 200
    for _ in range(6):
        assert second.rest("GET", "items?select=id").status_code == 200
    quiet()
    changed = difference(hub.usage("meter"), before)
    assert changed.get(("requests", "database:2xx")) == 11.0, changed


def test_a_clean_shutdown_flushes_what_the_kernel_counted(hub):
    """A kernel that would flush only hourly writes its counts when it stops (SIGTERM)."""
    quiet()
    before = hub.usage("meter")
    late = joined_kernel(hub.kernel, flush_seconds=3600)
    try:
        # Portals are loaded before the kernel listens: no probing requests needed.
        portal = dbkit.Portal(late, "meter", hub.portals["meter"].anon, hub.portals["meter"].service)
        for _ in range(9):
            response = portal.rest("GET", "items?select=id")
            assert response.status_code == 200, response.text
    finally:
        failures = dbkit.stop_and_check(late)
        assert not failures, "\n".join(failures)
    changed = difference(hub.usage("meter"), before)
    assert changed.get(("requests", "database:2xx")) == 9.0, changed

def test_a_new_portals_database_size_is_sampled_without_waiting_for_the_next_hour(hub):
    hub.create("sized", ["database"])
    deadline = time.monotonic() + 20
    size = 0.0
    while time.monotonic() < deadline and not size:
        time.sleep(FLUSH)
        size = hub.usage("sized").get(("db_size_bytes", ""), 0.0)
    assert size > 1_000_000, hub.usage("sized")

def test_metrics_show_the_portals_usage(hub):
    text = requests.get(hub.kernel.url + "/metrics", timeout=30).text
    assert 'meltybase_usage_requests_total{portal="meter",plugin="database",class="2xx"}' in text
    assert 'meltybase_usage_counter_total{portal="meter",plugin="vault",metric="vault_reads"}' in text


def test_a_hard_quota_refuses_with_429_naming_it(hub):
    capped = hub.portals["capped"]
    refused = None
    deadline = time.monotonic() + 30
    served = 0
    while time.monotonic() < deadline:
        response = capped.rest("GET", "")
        if response.status_code == 429:
            refused = response
            break
        served += 1
        time.sleep(0.1)
    assert refused is not None, "no 429 within 30 s"
    body = refused.json()
    assert body["code"] == "quota_exceeded", body
    assert "requests_per_month" in body["message"] and "capped" in body["message"], body
    assert body["hint"] and "quotas.portals.capped" in body["hint"]
    assert int(refused.headers["retry-after"]) > 0
    # Still refused, and other portals are served.
    assert capped.rest("GET", "").status_code == 429
    assert hub.portals["meter"].rest("GET", "items?select=id").status_code == 200
    total = sum(value for (metric, _), value in hub.usage("capped").items() if metric == "requests")
    assert total >= 12
    quotas = hub.get("/v1/hub/quotas").json()["quotas"]
    state = next(q for q in quotas if q["portal"] == "capped")
    assert state["level"] == "hard" and state["quota"] == "requests_per_month" and state["hard"] == 12
    audit = hub.get("/v1/audit", params={"action": "hub.quota.hard_exceeded"}).json()["entries"]
    assert [entry["portal"] for entry in audit if entry["portal"] == "capped"] == ["capped"]


def test_a_soft_quota_writes_one_audit_entry_and_keeps_serving(hub):
    warned = hub.portals["warned"]
    for _ in range(12):
        assert warned.rest("GET", "").status_code == 200
    quiet()
    for _ in range(3):
        assert warned.rest("GET", "").status_code == 200
    quiet()
    audit = hub.get("/v1/audit", params={"action": "hub.quota.soft_exceeded"}).json()["entries"]
    entries = [entry for entry in audit if entry["portal"] == "warned"]
    assert len(entries) == 1, audit
    assert entries[0]["target"] == "requests_per_month"
    assert entries[0]["details"]["limit"] == 10
    quotas = hub.get("/v1/hub/quotas").json()["quotas"]
    state = next(q for q in quotas if q["portal"] == "warned")
    assert state["level"] == "soft" and state["total"] >= 15


def test_billing_needs_aal2(hub):
    refused = hub.get("/v1/hub/billing", token=hub.aal1, params={"portal": "meter", "period": period()})
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "aal2_required"
    anonymous = requests.get(hub.kernel.url + "/v1/hub/billing", params={"portal": "meter"}, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["code"]


@pytest.mark.parametrize("params", [
    {"from": "yesterday"},
    {"to": "2026-13-45"},
    {"from": "99999-01-01T00:00:00Z"},
    {"from": "1970-01-01"},
    {"from": "2026-12-06", "to": "2026-12-01"},
    {"granularity": "year"},
    {"granularity": ""},
    {"format": "xml"},
    {"portal": "../etc"},
    {"portal": "x" * 200},
    {"from": "2" * 5000},
    {"limit": "5"},
    {"from": "2026-12-01T00:00:00+99:99"},
])
def test_hostile_usage_parameters_are_400_json(hub, params):
    response = hub.get("/v1/hub/usage", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_parameter" and body["message"], body


def test_a_nul_in_the_query_is_refused(hub):
    response = requests.get(hub.kernel.url + "/v1/hub/usage?from=2026%00", headers={"authorization": f"Bearer {hub.aal1}"}, timeout=30)
    assert response.status_code == 400 and response.json()["code"], response.text


def test_unknown_portals_are_404(hub):
    response = hub.get("/v1/hub/usage", params={"portal": "nobody-here"})
    assert response.status_code == 404 and response.json()["code"] == "portal_not_found", response.text
    bill = hub.get("/v1/hub/billing", token=hub.aal2, params={"portal": "nobody-here", "period": period()})
    assert bill.status_code == 404 and bill.json()["code"] == "portal_not_found", bill.text


@pytest.mark.parametrize("params", [
    {"period": period()},
    {"portal": "meter", "period": "2026-13"},
    {"portal": "meter", "period": "12-2026"},
    {"portal": "meter", "period": "1999-01"},
    {"portal": "meter", "period": "x" * 300},
    {"portal": "meter", "extra": "1"},
])
def test_hostile_billing_parameters_are_400_json(hub, params):
    response = hub.get("/v1/hub/billing", token=hub.aal2, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_parameter"


def test_a_huge_range_is_answered(hub):
    response = hub.get("/v1/hub/usage", params={"from": "2000-01-01", "to": "9999-12-31", "granularity": "month"})
    assert response.status_code == 200, response.text
    assert any(row["portal"] == "meter" for row in response.json()["rows"])



def test_the_studio_usage_page_charts_bills_and_shows_quota_states(hub, browser):
    from studio_driver import click, text_of, wait_for, wait_heading, wait_text

    browser.get(hub.kernel.url + "/dashboard/login")
    browser.execute_script("sessionStorage.clear()")
    browser.get(hub.kernel.url + "/dashboard/login")
    wait_for(browser, lambda d: text_of(d, "h1"), message="a screen")
    browser.execute_script(
        "sessionStorage.setItem('meltybase.session', JSON.stringify(Object.assign(arguments[0], {mfa_required: false, email: arguments[1]})))",
        hub.pair, EMAIL)
    browser.get(hub.kernel.url + "/dashboard/usage")
    wait_heading(browser, "Usage & billing")
    # Charts drawn by the page: one SVG per metric and portal, with bars.
    wait_for(browser, lambda d: d.execute_script(
        "return document.querySelectorAll('[data-metric=requests] svg[data-test=usage-chart] rect.usage-bar').length") > 0,
        message="a requests chart with bars")
    portals = browser.execute_script(
        "return [...document.querySelectorAll('[data-metric=requests] figcaption')].map((c) => c.textContent.split(':')[0])")
    assert {"meter", "capped", "warned"} <= set(portals), portals
    # The quota states: red for the hard limit, a banner for the soft one.
    wait_text(browser, "[data-test=quota-banner][data-level=hard]", "capped")
    wait_text(browser, "[data-test=quota-banner][data-level=soft]", "warned")
    assert "hard" in text_of(browser, "[data-test=quota-states] tr.quota-hard")
    # The bill of this month for a portal.
    browser.execute_script("document.querySelector('[name=bill-portal]').value = 'meter'")
    click(browser, "Show the bill")
    total = wait_text(browser, "[data-test=billing-total]", "EUR")
    bill = hub.get("/v1/hub/billing", token=hub.aal2, params={"portal": "meter", "period": period()}).json()
    assert total == f"{float(bill['total']):.2f} EUR"
    # Other pages carry the banners too.
    browser.get(hub.kernel.url + "/dashboard/overview")
    wait_heading(browser, "Overview")
    wait_text(browser, "[data-test=quota-banner][data-level=hard]", "capped")

def test_metering_off_serves_and_counts_nothing():
    kernel = dbkit.Kernel("[metering]\nenabled = false\nflush_interval_seconds = 1\n")
    try:
        portal = kernel.create_portal("quiet")
        for _ in range(5):
            assert portal.rest("GET", "").status_code == 200
        time.sleep(QUIET)
        # Still the same kernel process serving (no restart loop), and nothing metered.
        assert portal.rest("GET", "").status_code == 200
        assert "restarting it" not in kernel.log_text()
        assert "meltybase_usage_requests_total" not in requests.get(kernel.url + "/metrics", timeout=30).text
    finally:
        failures = dbkit.stop_and_check(kernel)
        assert not failures, "\n".join(failures)
