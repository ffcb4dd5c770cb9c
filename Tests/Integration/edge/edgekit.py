"""Frames of the Edge worker protocol (docs/edge-worker-protocol.md) and a runner launcher.

- `encode_frame(type, id, payload)` / `FrameReader(stream).read()` speak the binary frames.
- `Worker` starts Plugins/Edge/Runtime/runner.js with the real deno the way the Edge plugin
  does (cleared environment, permissions scoped to the function directory).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import threading
import queue
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RUNNER = ROOT / "Plugins" / "Edge" / "Runtime" / "runner.js"
DENO = Path(os.environ.get("MELTYBASE_DENO", ROOT / ".venv" / "bin" / "deno"))

# host -> worker
REQUEST = 0x01
BODY = 0x02
BODY_END = 0x03
CANCEL = 0x04
CREDIT = 0x05
DRAIN = 0x06
# worker -> host
READY = 0x11
BODY_PULL = 0x12
RESPONSE_HEAD = 0x13
RESPONSE_BODY = 0x14
RESPONSE_END = 0x15
ERROR = 0x16
LOG = 0x17

NAMES = {REQUEST: "REQUEST", BODY: "BODY", BODY_END: "BODY_END", CANCEL: "CANCEL", CREDIT: "CREDIT",
         DRAIN: "DRAIN", READY: "READY", BODY_PULL: "BODY_PULL", RESPONSE_HEAD: "RESPONSE_HEAD",
         RESPONSE_BODY: "RESPONSE_BODY", RESPONSE_END: "RESPONSE_END", ERROR: "ERROR", LOG: "LOG"}

HEADER = struct.Struct(">BII")
MAX_PAYLOAD = 1024 * 1024
MAX_RESPONSE_CHUNK = 64 * 1024
CREDIT_WINDOW = 8


def encode_frame(type: int, id: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(type, id, len(payload)) + payload


@dataclass
class Frame:
    type: int
    id: int
    payload: bytes

    def json(self):
        return json.loads(self.payload)

    def __repr__(self) -> str:
        return f"Frame({NAMES.get(self.type, hex(self.type))}, id={self.id}, {self.payload[:200]!r})"


class FrameReader:
    """Reads whole frames from a binary stream, whatever sizes its reads return."""

    def __init__(self, stream):
        self.stream = stream

    def _read_exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.stream.read(size - len(data))
            if not chunk:
                if data:
                    raise EOFError(f"stream ended inside a frame ({len(data)} of {size} bytes)")
                return None
            data += chunk
        return data

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        header = self._read_exactly(HEADER.size)
        if header is None:
            return None
        type, id, length = HEADER.unpack(header)
        if length > MAX_PAYLOAD:
            raise ValueError(f"frame payload of {length} bytes exceeds {MAX_PAYLOAD}")
        payload = self._read_exactly(length) if length else b""
        if payload is None:
            raise EOFError("stream ended before a frame's payload")
        return Frame(type, id, payload)


def request_head(method: str = "GET", path: str = "/", headers=None, body: bool = False,
                 request_id: str = "req") -> dict:
    return {"method": method, "url": f"http://edge.test/fn{path}", "headers": headers or [],
            "request_id": request_id, "body": body}


class Worker:
    """One runner process for the entry module `entry`; frames arrive on a reader thread."""

    def __init__(self, entry: Path, deno_dir: Path, allow_net: list[str] | None = None,
                 allow_env: dict[str, str] | None = None, max_old_space_mb: int = 128,
                 extra_args: list[str] | None = None):
        self.command = [str(DENO), "run", "--no-prompt", "--no-config",
                        f"--allow-read={entry.parent}"]
        if allow_net:
            self.command.append(f"--allow-net={','.join(allow_net)}")
        if allow_env:
            self.command.append(f"--allow-env={','.join(allow_env)}")
        self.command += [f"--v8-flags=--max-old-space-size={max_old_space_mb}", *(extra_args or []),
                         str(RUNNER), str(entry)]
        env = {"DENO_DIR": str(deno_dir), "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1",
               **(allow_env or {})}
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env, bufsize=0)
        self.frames: queue.Queue[Frame | None] = queue.Queue()
        self._stderr = bytearray()
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read_frames, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_frames(self):
        reader = FrameReader(self.process.stdout)
        try:
            while (frame := reader.read()) is not None:
                self.frames.put(frame)
        finally:
            self.frames.put(None)

    def _read_stderr(self):
        while chunk := self.process.stderr.read(65536):
            self._stderr += chunk

    def stderr(self) -> str:
        """What the worker wrote to stderr so far (read on a thread, so never blocks)."""
        return self._stderr.decode(errors="replace")

    def send(self, type: int, id: int, payload: bytes = b""):
        with self._write_lock:
            self.process.stdin.write(encode_frame(type, id, payload))
            self.process.stdin.flush()

    def send_json(self, type: int, id: int, value):
        self.send(type, id, json.dumps(value).encode())

    def next(self, timeout: float = 20) -> Frame | None:
        """The next frame (None once stdout ended); raises queue.Empty on timeout."""
        return self.frames.get(timeout=timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        try:
            self.process.stdin.close()
        except OSError:
            pass  # a broken pipe: the worker is gone anyway
