"""`[kernel] trusted_proxies`: behind a load balancer, the client is the address the proxy forwards.

Without it every client behind HAProxy shares the proxy's address: one per-client bucket,
one sign-in throttle, and loopback-only routes open to everyone when the proxy runs on the
kernel's machine. The kernel believes `X-Forwarded-For` only from a trusted peer, and then
only the rightmost entry that is not itself a trusted proxy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

import dbkit  # noqa: E402

# The "proxy" connects from 127.0.0.2; clients on 127.0.0.1 are not trusted.
BASE = """
[kernel]
trusted_proxies = ["127.0.0.2", "10.9.0.0/16"]

[[listeners]]
host = "127.0.0.1"
port = {port}

[plugins.database]
path = "{plugin}"

[rate_limit]
per_client = { rate = 0.01, burst = 3 }
per_portal = { rate = 100000, burst = 100000 }
"""


@pytest.fixture(scope="module")
def kernel():
    started = dbkit.Kernel(base_toml=BASE)
    try:
        yield started
    finally:
        started.stop()


def client(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10)


def statuses(http: httpx.Client, url: str, count: int, **headers: str) -> list[int]:
    return [http.get(url, headers=headers).status_code for _ in range(count)]


def test_each_forwarded_client_has_its_own_bucket_and_spoofing_from_elsewhere_is_ignored(kernel):
    url = f"{kernel.url}/v1/system/status"
    with client("127.0.0.2") as proxy, client("127.0.0.1") as direct:
        # Two clients behind the trusted proxy: a bucket each.
        assert statuses(proxy, url, 4, **{"X-Forwarded-For": "203.0.113.7"}) == [200, 200, 200, 429]
        assert statuses(proxy, url, 3, **{"X-Forwarded-For": "203.0.113.8"}) == [200, 200, 200]
        # A client that wrote its own entry before the proxy appended the real one: the
        # proxy's entry (rightmost untrusted) counts, the forged one is not believed.
        assert statuses(proxy, url, 1, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) == [429]
        # Chains of trusted proxies are walked: 10.9.1.1 is trusted, so the client is left of it.
        assert statuses(proxy, url, 1, **{"X-Forwarded-For": "203.0.113.7, 10.9.1.1"}) == [429]
        # An untrusted peer's header is ignored: 127.0.0.1 is its own client whatever it claims.
        claimed = [direct.get(url, headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code for n in range(4)]
        assert claimed == [200, 200, 200, 429]
        refused = direct.get(url, headers={"X-Forwarded-For": "192.0.2.200"})
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"


def test_hostile_forwarded_values_never_break_a_request(kernel):
    url = f"{kernel.url}/v1/system/status"
    hostile = ["", ",,,", "not-an-ip", "999.1.1.1", "1.2.3.4:80", "[2001:db8::1]:443", "2001:db8::2",
               "::ffff:203.0.113.99", "x" * 4000, "203.0.113.50\t, unknown", "127.0.0.1; DROP TABLE x"]
    with client("127.0.0.2") as proxy:
        for value in hostile:
            answer = proxy.get(url, headers={"X-Forwarded-For": value})
            assert answer.status_code in (200, 429), (value, answer.status_code, answer.text)
            if answer.status_code == 429:
                assert answer.json()["code"] == "rate_limited"


def test_a_forwarded_client_is_not_loopback_for_loopback_only_routes(kernel):
    url = f"{kernel.url}/v1/system/plugins"
    with client("127.0.0.2") as proxy:
        # The proxy itself (no header) is on this machine.
        assert proxy.get(url).status_code in (200, 429)
        forwarded = proxy.get(url, headers={"X-Forwarded-For": "198.51.100.20"})
        assert forwarded.status_code == 403 and forwarded.json()["code"] == "loopback_only", forwarded.text
        # A loopback client forwarded by the proxy is on this machine too.
        assert proxy.get(url, headers={"X-Forwarded-For": "127.0.0.1"}).status_code in (200, 429)


def test_a_bad_trusted_proxies_entry_is_a_located_config_error(tmp_path):
    import os
    import subprocess
    config = tmp_path / "meltybase.toml"
    config.write_text('[kernel]\ntrusted_proxies = ["10.0.0.0/33"]\n')
    done = subprocess.run([str(dbkit.kernel_binary()), "serve", "--config", str(config), "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")})
    assert done.returncode != 0
    assert "kernel.trusted_proxies" in done.stderr + done.stdout and "10.0.0.0/33" in done.stderr + done.stdout
