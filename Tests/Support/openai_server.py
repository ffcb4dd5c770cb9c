"""A local OpenAI-compatible model server for tests, scripted per test, run as a real process.

Usage:

    python Tests/Support/openai_server.py --port 0 [--host 127.0.0.1] [--dimensions 64] \
        [--models test-chat,test-embed] [--api-key KEY] [--port-file PATH]

- Binds `--host` (127.0.0.1). `--port 0` picks a free port. Once listening it prints exactly
  one line, `READY <port>`, to stdout (flushed) and writes the port to `--port-file` when
  given, then runs until SIGTERM or SIGINT. Standard library only; one thread per request.
- `--api-key KEY` (or `POST /__config {"api_key": ...}`): every `/v1/...` request must carry
  `Authorization: Bearer KEY`, else 401 with OpenAI's error body (`invalid_api_key`).

The model API (paths also answer without the `/v1` prefix):

- `POST /v1/chat/completions` consumes the next scripted turn. A turn is a JSON object:
  - `content`: the assistant's text; `tool_calls`: `[{"name", "arguments", "id"?}]`
    (`arguments` a JSON value, sent as its JSON text, or a string sent as is, malformed or
    not); `finish_reason` (default `tool_calls` when there are calls, else `stop`);
  - `usage`: `{"prompt_tokens", "completion_tokens"}` (default: words counted);
  - `status` with `error` (a message) to answer an error the way OpenAI does
    (`{"error": {"message", "type", "code"}}`), `retry_after` (seconds, a `Retry-After`
    header), `raw` (a body sent verbatim with `status` or 200, e.g. malformed JSON);
  - `delay`: seconds to wait before answering (timeouts); `chunk_delay`: seconds between
    SSE events; `comments`: true to interleave SSE comment lines (`: keep-alive`).
  When the request has `"stream": true` the answer is SSE exactly like OpenAI's:
  `data: {"object": "chat.completion.chunk", ...}` events, the first with
  `delta.role`, the content split over several events, each tool call opened by a delta
  with `index`, `id`, `type`, `function.name` and empty arguments, then its arguments in
  pieces; a final event with `finish_reason`; a `usage` event (empty `choices`) when
  `stream_options.include_usage` is true; then `data: [DONE]`. Sent with chunked transfer
  encoding, event by event. Without a scripted turn: 500 with a message saying the test did
  not script one. A request without `model` or a `messages` array gets 400.
- `POST /v1/embeddings`: deterministic vectors from the text (a signed hashed bag of words,
  L2-normalised; dimension `dimensions` from the request or `--dimensions`), so texts that
  share words are near. `encoding_format: "base64"` answers little-endian float32 in base64.
- `GET /v1/models`: the `--models` list.

The test API:

- `POST /__script` with a JSON list of turns (or `{"turns": [...]}`) appends them.
- `GET /__requests`: every model API request received, in order:
  `[{"method", "path", "headers" (names lower-cased, Authorization included), "body" (the
  parsed JSON, or the text when it is not JSON)}]`.
- `POST /__reset`: forgets the script, the requests and the `/__config` key.
- `POST /__config` `{"api_key": "..." | null}`; `GET /__health`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import signal
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 64 * 1024 * 1024
WORD = re.compile(r"[a-z0-9]+")


class State:
    """The script, the recorded requests and the configuration, shared by every request thread."""

    def __init__(self, dimensions: int, models: list[str], api_key: str | None):
        self.lock = threading.Lock()
        self.turns: list[dict] = []
        self.requests: list[dict] = []
        self.dimensions = dimensions
        self.models = models
        self.default_key = api_key
        self.api_key = api_key

    def reset(self) -> None:
        with self.lock:
            self.turns.clear()
            self.requests.clear()
            self.api_key = self.default_key

    def next_turn(self) -> dict | None:
        with self.lock:
            return self.turns.pop(0) if self.turns else None


def count_words(text: str) -> int:
    return len(text.split())


def prompt_words(body: dict) -> int:
    total = 0
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, str):
                total += count_words(content)
            elif isinstance(content, list):
                total += sum(count_words(part.get("text", "")) for part in content if isinstance(part, dict))
    return max(total, 1)


def split_text(text: str, pieces: int = 3) -> list[str]:
    """`text` in up to `pieces` parts (never empty ones), as a model streams it."""
    if len(text) <= 1:
        return [text] if text else []
    size = max(1, math.ceil(len(text) / pieces))
    return [text[index:index + size] for index in range(0, len(text), size)]


def turn_problem(turn: dict) -> str | None:
    """Why a scripted turn cannot be played, or None."""
    calls = turn.get("tool_calls", [])
    if not isinstance(calls, list) or not all(isinstance(call, dict) and isinstance(call.get("name"), str) for call in calls):
        return "tool_calls must be a list of objects with a string name"
    if turn.get("content") is not None and not isinstance(turn["content"], str):
        return "content must be a string"
    for field in ("delay", "chunk_delay", "status", "retry_after"):
        if field in turn and (not isinstance(turn[field], (int, float)) or isinstance(turn[field], bool) or turn[field] < 0):
            return f"{field} must be a non-negative number"
    if "usage" in turn and not isinstance(turn["usage"], dict):
        return "usage must be an object"
    return None


def embedding(text: str, dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    for word in WORD.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [value / norm for value in vector]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY the second waits for
    # the client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True
    server_version = "openai-test-server/1"
    state: State

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read /__requests instead
        pass

    # --- plumbing -------------------------------------------------------------

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, value, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(value).encode(), "application/json", headers)

    def send_bytes(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, status: int, message: str, kind: str, code: str | None = None,
                        headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)

    def api_path(self) -> str | None:
        """The model API path without `/v1` (`/chat/completions`), or None for other paths."""
        path = self.path.split("?", 1)[0]
        if path.startswith("/v1/"):
            path = path[3:]
        return path if path in ("/chat/completions", "/embeddings", "/models") else None

    def record(self, raw: bytes):
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": body,
        }
        with self.state.lock:
            self.state.requests.append(entry)
        return body

    def authorised(self) -> bool:
        with self.state.lock:
            key = self.state.api_key
        if key is None:
            return True
        if self.headers.get("authorization") == f"Bearer {key}":
            return True
        self.send_error_json(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return False

    # --- verbs ----------------------------------------------------------------

    def do_GET(self):
        if self.path == "/__requests":
            with self.state.lock:
                requests = list(self.state.requests)
            return self.send_json(200, requests)
        if self.path == "/__health":
            return self.send_json(200, {"ok": True})
        path = self.api_path()
        if path == "/models":
            self.record(b"")
            if not self.authorised():
                return
            created = int(time.time())
            models = [{"id": model, "object": "model", "created": created, "owned_by": "test"} for model in self.state.models]
            return self.send_json(200, {"object": "list", "data": models})
        self.send_error_json(404, f"no route GET {self.path}", "invalid_request_error", "not_found")

    def do_POST(self):
        try:
            raw = self.read_body()
        except ValueError as error:
            self.close_connection = True
            return self.send_error_json(413, str(error), "invalid_request_error")
        if self.path in ("/__script", "/__reset", "/__config"):
            return self.test_api(raw)
        path = self.api_path()
        if path is None or path == "/models":
            return self.send_error_json(404, f"no route POST {self.path}", "invalid_request_error", "not_found")
        body = self.record(raw)
        if not self.authorised():
            return
        if not isinstance(body, dict):
            return self.send_error_json(400, "the body must be a JSON object", "invalid_request_error")
        if path == "/embeddings":
            return self.embeddings(body)
        return self.chat(body)

    def test_api(self, raw: bytes):
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return self.send_error_json(400, "the body must be JSON", "test_server_error")
        if self.path == "/__reset":
            self.state.reset()
            return self.send_json(200, {"reset": True})
        if self.path == "/__config":
            if not isinstance(value, dict):
                return self.send_error_json(400, "send a JSON object", "test_server_error")
            with self.state.lock:
                if "api_key" in value:
                    self.state.api_key = value["api_key"]
            return self.send_json(200, {"ok": True})
        turns = value.get("turns") if isinstance(value, dict) else value
        if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
            return self.send_error_json(400, "send a JSON list of turns (objects)", "test_server_error")
        for turn in turns:
            problem = turn_problem(turn)
            if problem:
                return self.send_error_json(400, f"bad turn {json.dumps(turn)[:200]}: {problem}", "test_server_error")
        with self.state.lock:
            self.state.turns.extend(turns)
            queued = len(self.state.turns)
        self.send_json(200, {"queued": queued})

    # --- /chat/completions ----------------------------------------------------

    def chat(self, body: dict):
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self.send_error_json(400, "you must provide a model parameter", "invalid_request_error")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self.send_error_json(400, "'messages' must be a non-empty array", "invalid_request_error")
        turn = self.state.next_turn()
        if turn is None:
            return self.send_error_json(
                500, "the test did not script a turn for this /v1/chat/completions request (POST /__script first)",
                "test_server_error", "no_scripted_turn")
        delay = float(turn.get("delay") or 0)
        if delay > 0:
            time.sleep(delay)
        status = int(turn.get("status") or 200)
        headers = {"retry-after": str(turn["retry_after"])} if "retry_after" in turn else None
        if "raw" in turn:
            return self.send_bytes(status, str(turn["raw"]).encode(), turn.get("content_type", "application/json"), headers)
        if status != 200:
            kind = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
            return self.send_error_json(status, str(turn.get("error") or f"scripted error {status}"), kind, turn.get("code"), headers)

        content = turn.get("content")
        calls = []
        for index, call in enumerate(turn.get("tool_calls") or []):
            arguments = call.get("arguments", {})
            calls.append({
                "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
            })
        finish = turn.get("finish_reason") or ("tool_calls" if calls else "stop")
        usage = turn.get("usage") or {}
        prompt = int(usage.get("prompt_tokens", prompt_words(body)))
        completion = int(usage.get("completion_tokens",
                                   max(1, count_words(content or "") + sum(count_words(c["function"]["arguments"]) for c in calls))))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        identifier = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = body["model"]
        if body.get("stream") is True:
            include_usage = isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage") is True
            return self.stream(identifier, created, model, content, calls, finish, usage if include_usage else None, turn)
        message = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        self.send_json(200, {
            "id": identifier, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage, "system_fingerprint": "fp_test",
        })

    def stream(self, identifier, created, model, content, calls, finish, usage, turn):
        def chunk(delta: dict, finish_reason=None, with_usage=None, choices=True) -> dict:
            value = {"id": identifier, "object": "chat.completion.chunk", "created": created, "model": model,
                     "system_fingerprint": "fp_test",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}] if choices else []}
            if with_usage is not None:
                value["usage"] = with_usage
            return value

        events = [chunk({"role": "assistant", "content": ""})]
        for piece in split_text(content or ""):
            events.append(chunk({"content": piece}))
        for index, call in enumerate(calls):
            events.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            for piece in split_text(call["function"]["arguments"]):
                events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        events.append(chunk({}, finish))
        if usage is not None:
            events.append(chunk({}, with_usage=usage, choices=False))

        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        pause = float(turn.get("chunk_delay") or 0)
        comments = turn.get("comments") is True
        texts = [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]
        for number, text in enumerate(texts):
            if comments:
                text = ": keep-alive\n\n" + text
            self.write_chunk(text.encode())
            if pause > 0 and number + 1 < len(texts):
                time.sleep(pause)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # --- /embeddings ----------------------------------------------------------

    def embeddings(self, body: dict):
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
            return self.send_error_json(400, "'input' must be a string or a non-empty array of strings", "invalid_request_error")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self.send_error_json(400, "you must provide a model parameter", "invalid_request_error")
        dimensions = body.get("dimensions", self.state.dimensions)
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 8192:
            return self.send_error_json(400, "'dimensions' must be an integer from 1 to 8192", "invalid_request_error")
        data = []
        for index, text in enumerate(texts):
            vector = embedding(text, dimensions)
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data.append({"object": "embedding", "index": index, "embedding": encoded})
            else:
                data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(max(1, count_words(text)) for text in texts)
        self.send_json(200, {"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class QuietServer(ThreadingHTTPServer):
    """Ignores clients that went away mid-answer (a caller's timeout during a `delay`)."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--dimensions", type=int, default=64)
    parser.add_argument("--models", default="test-chat,test-embed")
    parser.add_argument("--api-key")
    options = parser.parse_args()

    Handler.state = State(options.dimensions, [m for m in options.models.split(",") if m], options.api_key)
    server = QuietServer((options.host, options.port), Handler)
    port = server.server_address[1]
    if options.port_file:
        Path(options.port_file).write_text(f"{port}\n")

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"READY {port}", flush=True)
    server.serve_forever()
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
