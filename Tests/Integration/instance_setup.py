"""Setting an instance up over its HTTP API, the one way every test does it: an evaluation
license, the first admin, TOTP to AAL2 when asked, and portals that the kernel has picked
up. Shared by the Studio, hardening, fuzzing, plugin-page and author-guide tests."""

from __future__ import annotations

import time

import requests


def next_totp(secret: str, after_step: int | None = None) -> tuple[str, int]:
    """A TOTP code for a 30 s step later than `after_step` (the kernel refuses replays)."""
    import pyotp

    totp = pyotp.TOTP(secret)
    while True:
        step = int(time.time()) // 30
        if after_step is None or step > after_step:
            return totp.at(step * 30), step
        time.sleep(0.5)


def post(kernel, path: str, body, token: str | None = None) -> requests.Response:
    """POST `body` as JSON to `path` of `kernel`, with `token` as the bearer when given."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return requests.post(kernel.url + path, json=body, headers=headers, timeout=60)


def set_up_instance(kernel, email: str, password: str, *, totp: bool = True) -> dict:
    """Sets `kernel` up with an evaluation license and one admin, signs in and, with `totp`,
    enrols TOTP: `{"pair": tokens (aal2 with totp, else aal1), "secret": ..., "step": ...}`
    (secret and step are None without totp; step is the TOTP step already used)."""
    issued = post(kernel, "/v1/system/license/evaluation", {})
    assert issued.status_code in (200, 201), issued.text
    setup = post(kernel, "/v1/system/setup", {"license_key": issued.json()["license_key"], "admin": {"email": email, "password": password}})
    assert setup.status_code in (200, 201), setup.text
    signed_in = post(kernel, "/v1/admin/login", {"email": email, "password": password})
    assert signed_in.status_code == 200, signed_in.text
    pair = signed_in.json()
    if not totp:
        return {"pair": pair, "secret": None, "step": None}
    enrolment = post(kernel, "/v1/admin/mfa/totp/enroll", {}, pair["access_token"])
    assert enrolment.status_code in (200, 201), enrolment.text
    secret = enrolment.json()["secret"]
    code, step = next_totp(secret)
    verified = post(kernel, "/v1/admin/mfa/totp/verify", {"code": code}, pair["access_token"])
    assert verified.status_code in (200, 201), verified.text
    pair = verified.json()
    assert pair["aal"] == "aal2", pair
    return {"pair": pair, "secret": secret, "step": step}


def create_portal(kernel, token: str, name: str, plugins: list[str], ready_path: str) -> None:
    """Creates portal `name` enabling `plugins` (needs an aal2 `token`) and waits until the
    kernel serves `ready_path` (it picks the portal up from its NOTIFY a moment later)."""
    created = post(kernel, "/v1/hub/portals", {"name": name, "plugins": plugins}, token)
    assert created.status_code in (200, 201), created.text
    deadline = time.monotonic() + 30
    while requests.get(kernel.url + ready_path, timeout=30).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
