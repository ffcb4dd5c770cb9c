"""The Realtime plugin's Studio page in a real browser: the counts of a portal's live
connections, and the inspector that joins a channel (as the admin, over the clients'
WebSocket protocol), receives a broadcast from a Supabase client and sends one back.
Also the stats route's access rules."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By

from instance_setup import create_portal, set_up_instance
from studio_driver import click, fill, wait_for, wait_heading, wait_text

sys.path.insert(0, str(Path(__file__).resolve().parent / "realtime"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

EMAIL = "rita@example.com"
PASSWORD = "Granite-Orchard-Lantern-84"
PORTAL = "live"

TOML = """
[plugins.database]
path = "libDatabasePlugin.so"

[plugins.realtime]
path = "libRealtimePlugin.so"
"""


@pytest.fixture(scope="module")
def kernel(module_kernel_factory):
    return module_kernel_factory(extra_toml=TOML)


@pytest.fixture(scope="module")
def admin(kernel):
    pair = set_up_instance(kernel, EMAIL, PASSWORD)["pair"]
    create_portal(kernel, pair["access_token"], PORTAL, ["database", "realtime"], f"/p/{PORTAL}/realtime/v1/api/stats")
    return pair


def test_stats_need_the_service_role_or_an_admin_at_aal2(kernel, admin):
    url = f"{kernel.url}/p/{PORTAL}/realtime/v1/api/stats"
    deadline = time.monotonic() + 30
    while True:  # the feed creates the portal's slot a moment after the portal is served
        as_admin = requests.get(url, headers={"authorization": f"Bearer {admin['access_token']}"}, timeout=30)
        assert as_admin.status_code == 200, as_admin.text
        body = as_admin.json()
        if body["change_feed"] == "streaming" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"connections", "channels", "subscriptions", "change_feed", "kernels", "node"} <= set(body)
    assert body["change_feed"] == "streaming"
    # No credential, or one that does not verify: 401 (the SDK's shared refusal).
    anonymous = requests.get(url, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized", anonymous.text
    forged = requests.get(url, headers={"authorization": "Bearer not-a-token"}, timeout=30)
    assert forged.status_code == 401 and forged.json()["code"] == "invalid_token", forged.text


def test_the_realtime_page_counts_connections_and_inspects_a_channel(kernel, admin, browser):
    browser.get(kernel.url + "/dashboard/login")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "h1"), message="a screen")
    browser.execute_script(
        "sessionStorage.setItem('meltybase.session', JSON.stringify(Object.assign(arguments[0], {mfa_required: false, email: arguments[1]})))",
        admin, EMAIL)
    browser.get(f"{kernel.url}/dashboard/plugins/realtime/live/{PORTAL}")
    wait_heading(browser, "Realtime")
    wait_text(browser, "[data-test=rt-counts]", "Connections")
    wait_text(browser, "[data-test=rt-counts]", "streaming")
    fill(browser, "Channel", "studio-room")
    click(browser, "Join")
    wait_text(browser, "[data-test=rt-log]", "phx_reply")
    wait_text(browser, "[data-test=rt-counts]", "1\nConnections", timeout=15)

    # A Supabase client on the same channel sends; the inspector shows it.
    import rtkit

    async def send_from_client():
        class Portal:
            base = f"{kernel.url}/p/{PORTAL}"
            anon = admin["access_token"]
        socket = await rtkit.RawSocket.open(Portal, vsn="2.0.0", key=admin["access_token"])
        try:
            await socket.join("realtime:studio-room")
            await socket.send("realtime:studio-room", "broadcast", {"type": "broadcast", "event": "from-client", "payload": {"n": 7}}, join_ref="1")
            await asyncio.sleep(0.5)
        finally:
            await socket.close()

    asyncio.run(send_from_client())
    wait_text(browser, "[data-test=rt-log]", "from-client")
    click(browser, "Broadcast")
    wait_text(browser, "[data-test=rt-log]", '"text":"hello"')
