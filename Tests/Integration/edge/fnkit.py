"""Helpers for the Edge plugin's kernel-level tests: deploy through the admin API, invoke."""

from __future__ import annotations

import time
from typing import Any

import httpx


def admin_headers(portal) -> dict[str, str]:
    return {"authorization": f"Bearer {portal.service}", "apikey": portal.service}


def functions_url(portal, name: str = "") -> str:
    return f"{portal.kernel.url}/p/{portal.name}/edge/v1/functions" + (f"/{name}" if name else "")


def invoke_url(portal, name: str, rest: str = "") -> str:
    return f"{portal.kernel.url}/p/{portal.name}/functions/v1/{name}{rest}"


def deploy_response(portal, name: str, files: dict[str, str], **manifest: Any) -> httpx.Response:
    body = {"name": name, "files": files, **manifest}
    return httpx.post(functions_url(portal), headers=admin_headers(portal), json=body, timeout=120)


def deploy(portal, name: str, files: dict[str, str] | str, **manifest: Any) -> dict[str, Any]:
    """Deploys `files` ({path: source}, or one index.ts source) and returns the answer; fails the
    test when the deploy is refused."""
    if isinstance(files, str):
        files = {"index.ts": files}
    response = deploy_response(portal, name, files, **manifest)
    assert response.status_code == 201, response.text
    return response.json()


def invoke(portal, name: str, rest: str = "", *, method: str = "POST", key: str | None = None, timeout: float = 60,
           **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    token = key if key is not None else portal.anon
    if token:
        headers.setdefault("authorization", f"Bearer {token}")
    return httpx.request(method, invoke_url(portal, name, rest), headers=headers, timeout=timeout, **kwargs)


def logs(portal, name: str, after: int = 0) -> list[dict[str, Any]]:
    response = httpx.get(functions_url(portal, name) + f"/logs?after={after}&limit=1000", headers=admin_headers(portal), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["lines"]


def wait_for_log(portal, name: str, predicate, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = logs(portal, name)
        for line in seen:
            if predicate(line):
                return line
        time.sleep(0.2)
    raise AssertionError(f"no matching log line of {name} within {timeout} s; lines: {seen[-20:]}")
