"""The local OpenAI-compatible model server (Tests/Support/openai_server.py) for the
Intelligence tests, and the portal settings that point a portal at it.

    server = llmkit.start_server()          # a process on 127.0.0.1:<port>
    server.script([{"content": "hello"}, {"tool_calls": [{"name": "f", "arguments": {"x": 1}}]}])
    ... the portal calls the model ...
    server.chat_requests()                  # the bodies of the /chat/completions requests
    server.stop()

`configure_portal(portal, server)` stores an API key in the portal's Vault and PUTs the
portal's provider settings (`/intelligence/v1/provider`) so the portal's model is the server.
The kernel must allow the server's host in its egress: `ikit.start_kernel(egress_hosts=[server.host])`
(the `llm_kernel` fixture does that).
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
SERVER = ROOT / "Tests" / "Support" / "openai_server.py"

DEFAULT_KEY = "sk-test-3f9c1a7e5d2b4c6a8e0f"
DEFAULT_SECRET = "LLM_API_KEY"


class ModelServer:
    """A running openai_server.py process."""

    def __init__(self, dimensions: int = 64, api_key: str | None = None, start_timeout: float = 20.0):
        command = [sys.executable, str(SERVER), "--port", "0", "--dimensions", str(dimensions)]
        if api_key is not None:
            command += ["--api-key", api_key]
        # stderr goes to a file: a pipe nobody reads would block the server once full.
        self.log = tempfile.NamedTemporaryFile(prefix="openai-server-", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + start_timeout
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline()
                break
            if self.process.poll() is not None:
                break
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"openai_server.py did not start: {line!r} {Path(self.log.name).read_text(errors='replace')[-4000:]}")
        self.port = int(line.split()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.base_url = f"{self.url}/v1"
        self.http = httpx.Client(timeout=30)

    def script(self, turns: list[dict[str, Any]]) -> None:
        """Appends `turns` (see openai_server.py) to the script /chat/completions consumes."""
        response = self.http.post(f"{self.url}/__script", json=turns)
        response.raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """Every model API request the server received: method, path, headers, body."""
        return self.http.get(f"{self.url}/__requests").json()

    def chat_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the /chat/completions requests, in order."""
        return [entry["body"] for entry in self.requests() if entry["path"].endswith("/chat/completions")]

    def reset(self) -> None:
        """Forgets the script, the requests and any key set through `require_key`."""
        self.http.post(f"{self.url}/__reset").raise_for_status()

    def require_key(self, key: str | None) -> None:
        """Requires `Authorization: Bearer <key>` on the model API until `reset()` (None: no key)."""
        self.http.post(f"{self.url}/__config", json={"api_key": key}).raise_for_status()

    def stop(self) -> None:
        if getattr(self, "http", None) is not None:
            self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def start_server(dimensions: int = 64, api_key: str | None = None) -> ModelServer:
    return ModelServer(dimensions=dimensions, api_key=api_key)


def store_secret(portal, name: str, value: str) -> None:
    """Creates (or updates) the Vault secret `name` of `portal` as its service_role."""
    url = f"{portal.base}/vault/v1/secrets"
    response = portal.request("POST", url, json={"name": name, "value": value})
    if response.status_code == 409:
        response = portal.request("PUT", f"{url}/{name}", json={"value": value})
    if response.status_code not in (200, 201):
        raise RuntimeError(f"cannot store the Vault secret {name}: {response.status_code} {response.text}")


def provider_settings(server: ModelServer, *, secret: str | None = DEFAULT_SECRET, chat_model: str = "test-chat",
                      embedding_model: str = "test-embed", stream: bool = False, timeout_seconds: int | None = None,
                      max_tokens: int | None = None) -> dict[str, Any]:
    """The body of `PUT /intelligence/v1/provider` pointing at `server`."""
    settings: dict[str, Any] = {"base_url": server.base_url, "chat_model": chat_model,
                                "embedding_model": embedding_model, "stream": stream}
    if secret is not None:
        settings["api_key_secret"] = secret
    if timeout_seconds is not None:
        settings["timeout_seconds"] = timeout_seconds
    if max_tokens is not None:
        settings["max_tokens"] = max_tokens
    return settings


def configure_portal(portal, server: ModelServer, *, api_key: str | None = DEFAULT_KEY, secret: str = DEFAULT_SECRET,
                     **settings: Any) -> dict[str, Any]:
    """Points `portal`'s model provider at `server`: stores `api_key` (None: a keyless server)
    as the Vault secret `secret` and PUTs the settings (`chat_model`, `embedding_model`,
    `stream`, `timeout_seconds`, `max_tokens`). Returns the settings the route answered."""
    if api_key is not None:
        store_secret(portal, secret, api_key)
    body = provider_settings(server, secret=secret if api_key is not None else None, **settings)
    response = portal.request("PUT", f"{portal.base}/intelligence/v1/provider", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"cannot configure the provider: {response.status_code} {response.text}")
    return response.json()


def sse_events(text: str) -> list[Any]:
    """The `data:` payloads of an SSE text (JSON decoded; `[DONE]` kept as the string)."""
    events = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("data:"):
            payload = line[5:].strip()
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
