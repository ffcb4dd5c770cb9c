"""Screenshots of the Studio for the docs: each setup-wizard step, the overview and the
Database and Vault pages, at 1280x800 and 390x844, from fresh kernels per size.

usage: .venv/bin/python Tests/Integration/screenshots.py [OUTDIR]   (default docs/studio)
Needs the debug build (`swift build`), like the browser tests.
"""

from __future__ import annotations

import secrets
import sys
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import new_browser  # noqa: E402
from meltybase_kernel import ROOT, MeltyBaseKernel  # noqa: E402
from studio_driver import click, fill, wait_field_error, wait_heading, wait_text  # noqa: E402
from test_studio_plugins import PLUGINS_TOML, PORTAL, initialize_with_totp_admin, run_sql, sign_in_with, sql  # noqa: E402

SIZES = [(1280, 800, False), (390, 844, True)]


def capture(driver, outdir: Path, name: str, width: int, height: int) -> None:
    path = outdir / f"{name}-{width}x{height}.png"
    driver.execute_script("document.activeElement?.blur?.()")
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


@contextmanager
def kernel_and_browser(width: int, height: int, mobile: bool, **kernel_options):
    """A fresh kernel and a headless browser with the device metrics of one size; both go at the end."""
    kernel = MeltyBaseKernel(**kernel_options)
    driver = new_browser(width, height)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        yield kernel, driver
    finally:
        driver.quit()
        kernel.stop()
        kernel.cleanup()


def run(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    for width, height, mobile in SIZES:
        with kernel_and_browser(width, height, mobile) as (kernel, driver):
            driver.get(kernel.url + "/dashboard")
            wait_heading(driver, "System pulse")
            wait_text(driver, "[data-test=pulse-json]", "is_initialized")
            capture(driver, outdir, "wizard-1-pulse", width, height)
            click(driver, "Begin the setup handshake")
            wait_heading(driver, "License handshake")
            click(driver, "Use this machine's evaluation license")
            wait_text(driver, "[data-test=license-summary]", "INDIE")
            capture(driver, outdir, "wizard-2-license", width, height)
            click(driver, "Continue")
            wait_heading(driver, "Admin provisioning")
            fill(driver, "Admin email", "ada@example.com")
            fill(driver, "Password", "password1234")
            click(driver, "Create the admin and initialize")
            wait_field_error(driver, "Password")
            capture(driver, outdir, "wizard-3-admin", width, height)
            fill(driver, "Password", "Orbital-Quartz-Lantern-77")
            click(driver, "Create the admin and initialize")
            wait_heading(driver, "Secure handover", timeout=60)
            capture(driver, outdir, "wizard-4-handover", width, height)
            click(driver, "Enter the dashboard")
            wait_heading(driver, "Overview")
            wait_text(driver, "[data-test=overview-license]", "INDIE")
            capture(driver, outdir, "overview", width, height)


def run_plugin_pages(outdir: Path) -> None:
    """The Database page (a table and a console error) and the Vault page, per size."""
    for width, height, mobile in SIZES:
        with kernel_and_browser(width, height, mobile, extra_toml=PLUGINS_TOML,
                                env={"MELTYBASE_MASTER_KEY": secrets.token_hex(32)}) as (kernel, driver):
            admin = initialize_with_totp_admin(kernel)
            token = admin["pair"]["access_token"]
            sql(kernel, token, "create table todos (id serial primary key, task text not null, done boolean default false);"
                " insert into todos (task, done) values ('Try MeltyBase', true), ('Point supabase-js at it', false),"
                " ('Write a policy', false)")
            for name, value, note in (("STRIPE_KEY", "sk_test_" + secrets.token_hex(8), "payments"),
                                      ("GEMINI_API_KEY", secrets.token_hex(16), "intelligence plugin")):
                created = requests.post(f"{kernel.url}/p/{PORTAL}/vault/v1/secrets", timeout=30,
                                        json={"name": name, "value": value, "description": note},
                                        headers={"authorization": f"Bearer {token}"})
                assert created.status_code in (200, 201), created.text
            sign_in_with(driver, kernel, admin["pair"], f"plugins/database/tables/{PORTAL}/todos")
            wait_heading(driver, "Database")
            wait_text(driver, "[data-test=db-rows]", "Try MeltyBase")
            driver.execute_script("window.scrollTo(0, 0)")
            capture(driver, outdir, "database", width, height)
            run_sql(driver, "select id,\n  from todos")
            wait_text(driver, "[data-test=sql-error]", "42601")
            driver.execute_script("document.querySelector('[data-test=sql-error]').scrollIntoView({block: 'end'})")
            capture(driver, outdir, "database-console", width, height)
            driver.get(f"{kernel.url}/dashboard/plugins/vault/secrets/{PORTAL}")
            wait_heading(driver, "Vault")
            wait_text(driver, "[data-test=vault-secrets]", "STRIPE_KEY")
            capture(driver, outdir, "vault", width, height)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "studio"
    run(target)
    run_plugin_pages(target)
