"""ABI 1.6 portal_token_verify and redis_url, through the Swift example plugin against the real
`meltybase serve`: a token that arrives inside a message (a Realtime join's access_token) is
verified by the kernel exactly as a request's credential is, and a plugin learns whether the
kernel has a Redis without ever being shown its URL here.

echo-swift answers `POST /p/<portal>/echo-swift/verify` (body: a token) with the credential
JSON of `verifyPortalToken`, and `GET .../redis` with whether `redisURL` is set.
"""

from __future__ import annotations

import time

import pytest
import requests

from instance_setup import post, set_up_instance

EMAIL = "verify@example.com"
PASSWORD = "correct horse battery staple"
HOME, OTHER = "tva", "tvb"


class Instance:
    """A kernel with two portals running echo-swift, their keys and the admin's tokens."""

    def __init__(self, kernel):
        self.kernel = kernel
        admin = set_up_instance(kernel, EMAIL, PASSWORD)
        self.aal2 = admin["pair"]["access_token"]
        password_only = post(kernel, "/v1/admin/login", {"email": EMAIL, "password": PASSWORD})
        assert password_only.status_code == 200, password_only.text
        self.aal1 = password_only.json()["access_token"]
        self.keys = {name: self.create_portal(name) for name in (HOME, OTHER)}

    def create_portal(self, name: str) -> dict:
        """Creates `name` with echo-swift (the keys are shown only in this answer) and waits until it is served."""
        created = post(self.kernel, "/v1/hub/portals", {"name": name, "plugins": ["echo-swift"]}, self.aal2)
        assert created.status_code in (200, 201), created.text
        body = created.json()
        keys = {"anon": body.get("anon_key") or body["keys"]["anon"],
                "service": body.get("service_role_key") or body["keys"]["service_role"]}
        deadline = time.monotonic() + 30
        while requests.get(f"{self.kernel.url}/p/{name}/echo-swift/echo", timeout=30).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        return keys

    def verify(self, portal: str, token: str) -> dict:
        answer = requests.post(f"{self.kernel.url}/p/{portal}/echo-swift/verify", data=token.encode(), timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def user_token(self, portal: str, lifetime: int = 3600) -> str:
        """A user token of `portal`, signed by the kernel (portal_jwt_sign) for its service_role caller."""
        service = self.keys[portal]["service"]
        signed = requests.post(f"{self.kernel.url}/p/{portal}/echo-swift/sign", timeout=30,
                               json={"role": "authenticated", "sub": "user-1", "exp": int(time.time()) + lifetime},
                               headers={"authorization": f"Bearer {service}", "apikey": service})
        assert signed.status_code == 200, signed.text
        return signed.json()["token"]


@pytest.fixture(scope="module")
def instance(module_kernel_factory):
    return Instance(module_kernel_factory())


def test_the_portals_anon_key_verifies_as_a_portal_token_with_role_anon(instance):
    credential = instance.verify(HOME, instance.keys[HOME]["anon"])
    assert credential["kind"] == "portal" and credential["role"] == "anon", credential
    assert credential["claims"]["ref"] == HOME, credential
    # The same again comes from the resolver's cache: the answer does not change.
    assert instance.verify(HOME, instance.keys[HOME]["anon"]) == credential


def test_a_user_token_verifies_on_its_portal_and_is_invalid_on_another(instance):
    token = instance.user_token(OTHER)
    own = instance.verify(OTHER, token)
    assert own["kind"] == "portal" and own["role"] == "authenticated" and own["subject"] == "user-1", own
    foreign = instance.verify(HOME, token)
    assert foreign["kind"] == "invalid" and foreign["reason"], foreign
    assert "claims" not in foreign


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJl"])
def test_garbage_is_invalid_with_a_reason(instance, garbage):
    credential = instance.verify(HOME, garbage)
    assert credential["kind"] == "invalid" and credential["reason"], credential


def test_an_empty_token_is_none(instance):
    assert instance.verify(HOME, "") == {"kind": "none"}


def test_an_expired_token_is_invalid_though_it_verified_while_valid(instance):
    token = instance.user_token(HOME, lifetime=2)
    assert instance.verify(HOME, token)["kind"] == "portal"
    time.sleep(3)
    # Also checks the cache: a verified token is kept no longer than its exp.
    credential = instance.verify(HOME, token)
    assert credential["kind"] == "invalid" and "expired" in credential["reason"], credential


def test_an_admin_token_answers_as_on_portal_routes(instance):
    # At AAL2 a portal route accepts a kernel admin; password-only (AAL1) it refuses one.
    admin = instance.verify(HOME, instance.aal2)
    assert admin["kind"] == "admin" and admin["aal"] == "aal2", admin
    refused = instance.verify(HOME, instance.aal1)
    assert refused["kind"] == "invalid" and refused["reason"], refused
    route = requests.get(f"{instance.kernel.url}/p/{HOME}/echo-swift/credential", timeout=30,
                         headers={"authorization": f"Bearer {instance.aal1}"})
    assert route.status_code in (401, 403), route.text


def test_the_plugin_sees_the_kernels_redis_without_printing_it(instance):
    answer = requests.get(f"{instance.kernel.url}/p/{HOME}/echo-swift/redis", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"redis": True}
    assert "redis://" not in answer.text and "unix://" not in answer.text
