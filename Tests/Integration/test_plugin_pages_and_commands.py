"""ABI 1.5 end to end with a third-party plugin (Tests/Fixtures/ThirdPartyPlugin, built by
scripts/build-c-plugins.sh --with-broken as libacme_report.so with its acme_report_studio
folder): its Studio page appears in the navigation once a portal enables it, opens from
there and renders what the plugin's own route answers (through context.api); its command
runs as `meltybase acme-report record`, prints, exits 0 and leaves an audit entry; unknown
plugins and commands are refused with exit status 2; a bad page id and a studio folder that
climbs out with `..` refuse the plugin with one precise line."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests
from selenium.webdriver.common.by import By

from instance_setup import create_portal, set_up_instance
from meltybase_kernel import kernel_binary
from studio_driver import text_of, wait_click, wait_for, wait_heading, wait_text

EMAIL = "ines@example.com"
PASSWORD = "Granite-Orchard-Lantern-84"
PORTAL = "acme"

ACME_TOML = """
[plugins.acme-report]
path = "libacme_report.so"
required = true
"""


@pytest.fixture(scope="module")
def kernel(module_kernel_factory):
    return module_kernel_factory(extra_toml=ACME_TOML)


@pytest.fixture(scope="module")
def admin(kernel):
    """Setup with an evaluation license, one admin, and PORTAL enabling acme-report: the token pair."""
    pair = set_up_instance(kernel, EMAIL, PASSWORD)["pair"]  # creating a portal needs AAL2
    create_portal(kernel, pair["access_token"], PORTAL, ["acme-report"], f"/p/{PORTAL}/acme-report/v1/summary")
    return pair


def cli(kernel, *arguments, config=None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    return subprocess.run([str(kernel_binary()), *arguments, "--config", str(config or kernel.config)],
                          capture_output=True, text=True, timeout=120, env=environment, cwd=kernel.directory)


def test_the_plugin_page_opens_from_the_navigation_and_shows_its_route_data(kernel, admin, browser):
    listing = requests.get(kernel.url + "/v1/hub/studio/pages", timeout=30,
                           headers={"authorization": f"Bearer {admin['access_token']}"}).json()
    assert [(p["plugin"], p["id"], p["portals"]) for p in listing["pages"]] == [("acme-report", "report", [PORTAL])], listing

    browser.get(kernel.url + "/dashboard/login")
    wait_for(browser, lambda d: text_of(d, "h1"), message="a screen")
    browser.execute_script(
        "sessionStorage.setItem('meltybase.session', JSON.stringify(Object.assign(arguments[0], {mfa_required: false, email: arguments[1]})))",
        admin, EMAIL)
    browser.get(kernel.url + "/dashboard/overview")
    wait_heading(browser, "Overview")
    # The overview shows the plugin's own health report.
    wait_text(browser, "[data-test=plugin-health][data-plugin=acme-report]", "degraded")
    assert "fixture reports degraded on purpose" in text_of(browser, "[data-test=plugin-health][data-plugin=acme-report]")

    wait_click(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=plugin-nav] a[data-plugin=acme-report]"), "the plugin's nav link")
    wait_heading(browser, "Acme report")
    assert browser.current_url.endswith("/dashboard/plugins/acme-report/report")
    wait_text(browser, "[data-test=acme-items]", "widgets")
    items = browser.execute_script(
        "return [...document.querySelectorAll('[data-test=acme-items] tbody tr')].map(r => r.innerText.replace(/\\s+/g, ' ').trim())")
    assert items == ["widgets 42", "gadgets 7"], items
    assert text_of(browser, "[data-test=acme-portal]") == f"Portal {PORTAL} (plugin acme-report)"
    current = browser.execute_script("return document.querySelector('[data-test=plugin-nav] a[aria-current=page]')?.dataset.plugin")
    assert current == "acme-report"

    # A reload of the page's own address lands on the same page.
    browser.refresh()
    wait_text(browser, "[data-test=acme-items]", "gadgets")


def test_the_plugin_command_runs_prints_exits_and_audits(kernel, admin):
    result = cli(kernel, "acme-report", "record", "--note", "quarterly check")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "recorded note: quarterly check\n"
    audit = requests.get(kernel.url + "/v1/audit?action=acme.note", timeout=30,
                         headers={"authorization": f"Bearer {admin['access_token']}"}).json()
    entries = audit["entries"]
    assert len(entries) == 1, audit
    assert entries[0]["actor"] == "plugin:acme-report" and entries[0]["target"] == "cli", entries[0]
    assert entries[0]["details"] == {"note": "quarterly check"}, entries[0]

    usage = cli(kernel, "acme-report", "record")
    assert usage.returncode == 2 and "--note TEXT is required" in usage.stderr

    listing = cli(kernel, "acme-report", "--help")
    assert listing.returncode == 0 and "record  Write a note into the kernel's audit log." in listing.stdout
    help_text = cli(kernel, "acme-report", "record", "--help")
    assert help_text.returncode == 0 and help_text.stdout.startswith("USAGE: meltybase acme-report record --note TEXT")
    overall = cli(kernel, "--help")
    assert "PLUGIN COMMANDS" in overall.stdout and "acme-report record" in overall.stdout


def test_unknown_plugin_and_command_are_refused_with_status_2(kernel):
    unknown_command = cli(kernel, "acme-report", "explode")
    assert unknown_command.returncode == 2
    assert unknown_command.stderr == ('Error: plugin "acme-report" has no command "explode"; its commands: record '
                                      "(meltybase acme-report --help)\n")
    unknown_plugin = cli(kernel, "nosuchplugin", "run")
    assert unknown_plugin.returncode == 2
    assert unknown_plugin.stderr.startswith('Error: unknown command or plugin "nosuchplugin": built-in commands are ')


@pytest.mark.parametrize("fixture, name, reason", [
    ("bad_page_id", "broken-page-id",
     "descriptor field studio_pages[0].id: expected 1 to 63 characters of a-z, 0-9, '-' and '_', found \"Bad Page\""),
    ("studio_escape", "broken-studio-escape",
     "descriptor field studio_directory: expected a relative path of A-Z, a-z, 0-9, '.', '_', '-' and '/' "
     "without '..' or a leading '/', found \"../../etc\""),
])
def test_a_bad_page_id_or_an_escaping_studio_folder_refuses_the_plugin(kernel, tmp_path, fixture, name, reason):
    config = tmp_path / "plugins.toml"
    library = kernel_binary().parent / "broken" / f"lib{fixture}.so"
    config.write_text(f'[kernel]\ndata_dir = "{tmp_path / "data"}"\n\n[plugins.{name}]\npath = "{library}"\n')
    result = cli(kernel, name, "--help", config=config)
    assert result.returncode == 1, result
    assert result.stderr == f'Error: plugin "{name}" ({library}) not loaded: {reason}\n'
