"""The Edge runner (Plugins/Edge/Runtime/runner.js) against the worker protocol, spoken from
Python to the real deno: handler forms, request/response streaming with pulls and credits,
concurrency, logs, errors, cancellation, permissions and draining."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import pytest

from edgekit import (BODY, BODY_END, BODY_PULL, CANCEL, CREDIT, CREDIT_WINDOW, DRAIN, ERROR, LOG,
                     MAX_RESPONSE_CHUNK, READY, REQUEST, RESPONSE_BODY, RESPONSE_END, RESPONSE_HEAD,
                     Worker, encode_frame, request_head)


@pytest.fixture(scope="module")
def deno_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deno_dir")


@pytest.fixture
def start(tmp_path, deno_dir):
    """start({"main.js": source, ...}, **worker options) -> a Worker on main.* (READY read)."""
    workers: list[Worker] = []

    def launch(files: dict[str, str], entry: str | None = None, expect_ready: bool = True, **options):
        function_dir = tmp_path / f"function{len(workers)}"
        function_dir.mkdir()
        for name, source in files.items():
            (function_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (function_dir / name).write_text(source)
        worker = Worker(function_dir / (entry or next(iter(files))), deno_dir, **options)
        workers.append(worker)
        if expect_ready:
            ready = worker.next(timeout=60)
            while ready is not None and ready.type == LOG and ready.id == 0:
                ready = worker.next(timeout=60)  # the module logged while loading
            assert ready is not None and ready.type == READY, (ready, worker.stderr())
            assert ready.json() == {"ok": True}
        return worker

    yield launch
    for worker in workers:
        worker.stop()


def exchange(worker: Worker, id: int, head: dict, body_chunks: list[bytes] = (), timeout: float = 20):
    """Sends a REQUEST, answers its pulls with body_chunks, grants credits; returns
    (status, headers, body, logs, pulls) once RESPONSE_END (or ERROR -> status None)."""
    worker.send_json(REQUEST, id, head)
    chunks = list(body_chunks)
    status, headers, body, logs, pulls = None, None, b"", [], 0
    while True:
        frame = worker.next(timeout)
        assert frame is not None, worker.stderr()
        assert frame.id == id, frame
        if frame.type == BODY_PULL:
            pulls += 1
            worker.send(BODY, id, chunks.pop(0)) if chunks else worker.send(BODY_END, id)
        elif frame.type == LOG:
            logs.append(frame.json())
        elif frame.type == RESPONSE_HEAD:
            head_json = frame.json()
            status, headers = head_json["status"], head_json["headers"]
        elif frame.type == RESPONSE_BODY:
            body += frame.payload
            worker.send(CREDIT, id)
        elif frame.type == RESPONSE_END:
            return status, headers, body, logs, pulls
        elif frame.type == ERROR:
            return None, None, frame.json(), logs, pulls
        else:
            pytest.fail(f"unexpected {frame}")


def frames_until(worker: Worker, done, timeout: float = 20) -> list:
    frames = []
    while True:
        frame = worker.next(timeout)
        assert frame is not None, worker.stderr()
        frames.append(frame)
        if done(frame):
            return frames


HANDLER_FORMS = {
    "default function": 'export default (req) => new Response("form ok");',
    "default object with fetch": 'export default { fetch(req) { return new Response("form ok"); } };',
    "Deno.serve(handler)": 'Deno.serve((req) => new Response("form ok"));',
    "Deno.serve(options, handler)": 'Deno.serve({ port: 8000 }, async (req) => new Response("form ok"));',
    "Deno.serve({handler})": 'const server = Deno.serve({ port: 8000, handler: (req) => new Response("form ok") });\n'
                             'server.unref(); console.log(server.addr.port);',
}


@pytest.mark.parametrize("form", HANDLER_FORMS)
def test_handler_forms(start, form):
    worker = start({"main.js": HANDLER_FORMS[form]})
    status, headers, body, _, _ = exchange(worker, 1, request_head())
    assert (status, body) == (200, b"form ok")
    assert ["content-type", "text/plain;charset=UTF-8"] in headers


def test_typescript_entry_with_local_import(start):
    worker = start({
        "main.ts": 'import { shout } from "./lib/shout.ts";\n'
                   'export default (req: Request, info: Deno.ServeHandlerInfo): Response =>\n'
                   '  new Response(shout(new URL(req.url).pathname) + " " + info.remoteAddr.hostname);',
        "lib/shout.ts": "export const shout = (text: string): string => text.toUpperCase();",
    }, entry="main.ts")
    assert exchange(worker, 7, request_head(path="/abc"))[2] == b"/FN/ABC 127.0.0.1"


def test_missing_handler_is_not_ready(start):
    worker = start({"main.js": "export const notAHandler = 1;"}, expect_ready=False)
    ready = worker.next(timeout=60)
    assert ready.type == READY and ready.id == 0
    assert ready.json()["ok"] is False
    assert "exports no handler" in ready.json()["error"]
    assert worker.process.wait(timeout=10) == 1


def test_module_throwing_at_import_reports_its_location(start):
    worker = start({"main.js": 'const ok = 1;\n\nthrow new Error("broken config");\n'}, expect_ready=False)
    ready = worker.next(timeout=60).json()
    assert ready["ok"] is False
    assert ready["error"] == "Error: broken config"
    assert ready["location"].startswith("file:///") and ready["location"].endswith("/main.js:3:7")
    assert worker.process.wait(timeout=10) == 1


def test_syntax_error_reports_its_location(start):
    worker = start({"main.js": 'export default (req) => {\n  return new Response("x"\n};\n'}, expect_ready=False)
    ready = worker.next(timeout=60).json()
    assert ready["ok"] is False and "SyntaxError" in ready["error"]
    assert "/main.js:" in ready["location"]


ECHO = """
export default async (req) => {
  const text = req.body ? await req.text() : "";
  return new Response(`${req.method} ${new URL(req.url).search} ${req.headers.get("x-test")} [${text}]`,
                      { status: 201, headers: { "x-echo": "yes" } });
};
"""


def test_get_without_body(start):
    worker = start({"main.js": ECHO})
    status, headers, body, _, pulls = exchange(worker, 1, request_head("GET", "/?q=1", [["x-test", "t"]]))
    assert (status, body, pulls) == (201, b"GET ?q=1 t []", 0)
    assert ["x-echo", "yes"] in headers


def test_post_body_is_pulled_chunk_by_chunk(start):
    worker = start({"main.js": ECHO})
    chunks = [b"alpha,", b"", b"beta,", "gamma-\u00e9".encode()]
    status, _, body, _, pulls = exchange(worker, 2, request_head("POST", "/", [["x-test", "p"]], body=True), chunks)
    assert status == 201
    assert body.decode() == "POST  p [alpha,beta,gamma-\u00e9]"
    assert pulls == len(chunks) + 1  # one pull per chunk (also the empty one), one for BODY_END


def test_body_is_not_pulled_before_the_function_reads_it(start):
    worker = start({"main.js": """
export default async (req) => {
  await new Promise((resolve) => setTimeout(resolve, 300));
  console.log("reading now");
  return new Response(await req.text());
};"""})
    worker.send_json(REQUEST, 3, request_head("POST", body=True))
    first = worker.next()
    assert first.type == LOG and first.json()["message"] == "reading now"
    assert worker.next().type == BODY_PULL
    worker.send(BODY, 3, b"late")
    assert worker.next().type == BODY_PULL
    worker.send(BODY_END, 3)
    frames = frames_until(worker, lambda frame: frame.type == RESPONSE_END)
    assert b"".join(frame.payload for frame in frames if frame.type == RESPONSE_BODY) == b"late"


def test_pushed_body_arriving_with_its_request_is_read_without_a_pull(start):
    worker = start({"main.js": ECHO})
    head = request_head("POST", "/", [["x-test", "w"]], body=True) | {"pushed": True}
    worker.process.stdin.write(encode_frame(REQUEST, 4, json.dumps(head).encode()) + encode_frame(BODY, 4, b"one,")
                               + encode_frame(BODY, 4, "two-\u00e9".encode()) + encode_frame(BODY_END, 4))
    worker.process.stdin.flush()
    frames = frames_until(worker, lambda frame: frame.type in (RESPONSE_END, ERROR))
    assert BODY_PULL not in [frame.type for frame in frames], frames
    assert b"".join(frame.payload for frame in frames if frame.type == RESPONSE_BODY).decode() == "POST  w [one,two-\u00e9]"


def test_pushed_body_arriving_later_is_waited_for_without_a_pull(start):
    worker = start({"main.js": ECHO})
    worker.send_json(REQUEST, 5, request_head("POST", body=True) | {"pushed": True})
    time.sleep(0.3)  # the function reads before the body is there
    worker.send(BODY, 5, b"late ")
    time.sleep(0.1)
    worker.send(BODY, 5, b"parts")
    worker.send(BODY_END, 5)
    frames = frames_until(worker, lambda frame: frame.type in (RESPONSE_END, ERROR))
    assert BODY_PULL not in [frame.type for frame in frames], frames
    assert b"".join(frame.payload for frame in frames if frame.type == RESPONSE_BODY) == b"POST  null [late parts]"


@pytest.mark.parametrize("case", ["body after the pushed end", "pushed without a body", "pushed beyond 1 MiB"])
def test_pushed_body_protocol_errors_end_the_worker(start, case):
    worker = start({"main.js": 'export default async () => { await new Promise(() => {}); };'})
    if case == "pushed without a body":
        data = encode_frame(REQUEST, 1, json.dumps(request_head() | {"pushed": True}).encode())
    else:
        data = encode_frame(REQUEST, 1, json.dumps(request_head("POST", body=True) | {"pushed": True}).encode())
        if case == "body after the pushed end":
            data += encode_frame(BODY, 1, b"a") + encode_frame(BODY_END, 1) + encode_frame(BODY, 1, b"b")
        else:
            data += encode_frame(BODY, 1, b"x" * (1 << 20)) + encode_frame(BODY, 1, b"y")
    worker.process.stdin.write(data)
    worker.process.stdin.flush()
    assert worker.process.wait(timeout=10) == 2
    time.sleep(0.1)
    assert "edge runner: protocol error" in worker.stderr()


def test_body_read_after_the_response_fails_without_asking_the_host(start):
    worker = start({"main.js": """
export default (req) => {
  setTimeout(() => req.text().catch((error) => console.log(`late read: ${error.name}`)), 200);
  return new Response("answered");
};"""})
    status, _, body, _, pulls = exchange(worker, 6, request_head("POST", body=True), [b"never asked"])
    assert (status, body, pulls) == (200, b"answered", 0)
    late = worker.next()
    assert (late.type, late.id, late.json()["message"]) == (LOG, 6, "late read: Interrupted")


def test_streamed_response_respects_the_credit_window(start):
    worker = start({"main.js": """
export default () => new Response(new ReadableStream({
  start(controller) {
    controller.enqueue(new Uint8Array(150 * 1024).fill(97));     // split into 64 KiB chunks
    for (let i = 0; i < 12; i++) controller.enqueue(new TextEncoder().encode(`part ${i};`));
    controller.close();
  },
}));"""})
    worker.send_json(REQUEST, 5, request_head())
    assert worker.next().type == RESPONSE_HEAD
    chunks = [worker.next() for _ in range(CREDIT_WINDOW)]
    assert all(frame.type == RESPONSE_BODY and frame.id == 5 for frame in chunks)
    with pytest.raises(queue.Empty):
        worker.next(timeout=0.7)  # window full: nothing more without a CREDIT
    for _ in chunks:
        worker.send(CREDIT, 5)
    rest = frames_until(worker, lambda frame: frame.type == RESPONSE_END)
    for frame in rest[:-1]:
        worker.send(CREDIT, 5)
    body_frames = chunks + rest[:-1]
    assert all(len(frame.payload) <= MAX_RESPONSE_CHUNK for frame in body_frames)
    assert len(body_frames) == 3 + 12
    body = b"".join(frame.payload for frame in body_frames)
    assert body == b"a" * 150 * 1024 + b"".join(f"part {i};".encode() for i in range(12))


def test_null_body_response_is_head_then_end(start):
    worker = start({"main.js": 'export default () => new Response(null, { status: 204 });'})
    worker.send_json(REQUEST, 9, request_head())
    assert [frame.type for frame in frames_until(worker, lambda f: f.type == RESPONSE_END)] == \
        [RESPONSE_HEAD, RESPONSE_END]


def test_head_request_gets_no_body(start):
    worker = start({"main.js": 'export default () => new Response("body a HEAD must not carry");'})
    worker.send_json(REQUEST, 10, request_head("HEAD"))
    assert [frame.type for frame in frames_until(worker, lambda f: f.type == RESPONSE_END)] == \
        [RESPONSE_HEAD, RESPONSE_END]


def test_deno_serve_twice_is_refused_at_load(start):
    worker = start({"main.js": 'Deno.serve(() => new Response("a"));\nDeno.serve(() => new Response("b"));\n'},
                   expect_ready=False)
    ready = worker.next(timeout=60).json()
    assert ready["ok"] is False and "only once" in ready["error"]
    assert ready["location"].endswith("/main.js:2:6")


def test_concurrent_requests_interleave_with_their_own_logs(start):
    worker = start({"main.js": """
export default async (req) => {
  const n = Number(new URL(req.url).searchParams.get("n"));
  console.log(`start ${n}`);
  await new Promise((resolve) => setTimeout(resolve, (20 - n) * 15));
  Deno.stdout.write(new TextEncoder().encode(`stdout ${n}\\n`));
  const body = await req.text();
  console.info(`end ${n}`);
  return new Response(`${n}:${body}`);
};"""})
    count = 16
    for n in range(1, count + 1):
        worker.send_json(REQUEST, 100 + n, request_head("POST", f"/?n={n}", body=True))
    logs: dict[int, list[str]] = {}
    bodies: dict[int, bytes] = {}
    finished_order = []
    while len(finished_order) < count:
        frame = worker.next()
        assert frame is not None, worker.stderr()
        if frame.type == LOG:
            logs.setdefault(frame.id, []).append(frame.json()["message"])
        elif frame.type == BODY_PULL:
            already = bodies.setdefault(frame.id, b"")
            if already:
                worker.send(BODY_END, frame.id)
            else:
                bodies[frame.id] = b"x" * (frame.id - 100)
                worker.send(BODY, frame.id, bodies[frame.id])
        elif frame.type == RESPONSE_BODY:
            n = frame.id - 100
            assert frame.payload == f"{n}:{'x' * n}".encode()
            worker.send(CREDIT, frame.id)
        elif frame.type == RESPONSE_END:
            finished_order.append(frame.id - 100)
    assert sorted(finished_order) == list(range(1, count + 1))
    assert finished_order != sorted(finished_order)  # later requests answered first: interleaved
    for n in range(1, count + 1):
        assert logs[100 + n] == [f"start {n}", f"stdout {n}", f"end {n}"]


def test_output_of_every_kind_becomes_log_frames(start):
    worker = start({"main.js": """
console.log("at import");
export default async (req) => {
  console.debug("d"); console.info("i"); console.log("l %d", 5, { a: [1] }); console.warn("w"); console.error("e");
  await Deno.stdout.write(new TextEncoder().encode("to stdout\\n"));
  Deno.stderr.writeSync(new TextEncoder().encode("to stderr"));
  process.stdout.write("process stdout\\n");
  const stdin = await Deno.stdin.read(new Uint8Array(10));
  const stdinText = await new Response(Deno.stdin.readable).text();
  return new Response(`stdin: ${stdin} [${stdinText}]`);
};"""}, expect_ready=False)
    first = worker.next(timeout=60)
    assert (first.type, first.id, first.json()) == (LOG, 0, {"level": "log", "message": "at import"})
    assert worker.next().json() == {"ok": True}
    _, _, body, logs, _ = exchange(worker, 4, request_head())
    assert body == b"stdin: null []"
    assert logs == [
        {"level": "debug", "message": "d"},
        {"level": "info", "message": "i"},
        {"level": "log", "message": "l 5 { a: [ 1 ] }"},
        {"level": "warn", "message": "w"},
        {"level": "error", "message": "e"},
        {"level": "log", "message": "to stdout"},
        {"level": "error", "message": "to stderr"},
        {"level": "log", "message": "process stdout"},
    ]


def test_handler_errors_become_error_frames(start):
    worker = start({"main.js": """
export default (req) => {
  const path = new URL(req.url).pathname;  // /fn/...
  if (path === "/fn/throw") throw new RangeError("no such thing");
  if (path === "/fn/not-a-response") return { status: 200 };
  if (path === "/fn/fails-at-once") {
    return new Response(new ReadableStream({
      pull(controller) { controller.enqueue(new TextEncoder().encode("partial")); throw new Error("at once"); },
    }));
  }
  let pulls = 0;
  return new Response(new ReadableStream({
    async pull(controller) {
      pulls += 1;
      if (pulls === 1) { controller.enqueue(new TextEncoder().encode("partial")); return; }
      await new Promise((resolve) => setTimeout(resolve, 50));
      throw new Error("mid-stream");
    },
  }));
};"""})
    _, _, error, _, _ = exchange(worker, 1, request_head(path="/throw"))
    assert error["message"] == "RangeError: no such thing"
    assert "main.js:4:" in error["stack"]
    _, _, error, _, _ = exchange(worker, 2, request_head(path="/not-a-response"))
    assert "instead of a Response" in error["message"]
    # A body that fails before its head could leave (within the look-ahead) is an ERROR.
    _, _, error, _, _ = exchange(worker, 3, request_head(path="/fails-at-once"))
    assert "at once" in error["message"]
    # After the head went out: the END, and the reason in the log.
    status, _, _, logs, _ = exchange(worker, 4, request_head(path="/stream-fails"))
    assert status == 200
    assert logs and logs[-1]["level"] == "error" and "mid-stream" in logs[-1]["message"]


def test_uncaught_errors_are_logged_and_the_worker_lives_on(start):
    worker = start({"main.js": """
export default (req) => {
  setTimeout(() => { throw new Error("timer boom"); }, 0);
  Promise.reject(new Error("rejected boom"));
  return new Response("still here");
};"""})
    worker.send_json(REQUEST, 1, request_head())
    frames = [worker.next() for _ in range(5)]  # HEAD, BODY, END and two LOGs in any order
    logs = {frame.json()["message"].splitlines()[0]: (frame.id, frame.json()["level"])
            for frame in frames if frame.type == LOG}
    # A rejection keeps the request's context; a timer's uncaught exception has none (id 0).
    assert logs == {"Unhandled promise rejection: Error: rejected boom": (1, "error"),
                    "Uncaught Error: timer boom": (0, "error")}
    assert exchange(worker, 2, request_head())[2] == b"still here"


def test_cancel_aborts_the_request_signal(start):
    worker = start({"main.js": """
export default async (req, info) => {
  if (new URL(req.url).pathname === "/fn/quick") return new Response("quick");
  info.completed.catch((error) => console.log(`completed rejected: ${error.name}`));
  await new Promise((resolve) => req.signal.addEventListener("abort", resolve));
  console.log(`aborted: ${req.signal.reason.name}`);
  return new Response("too late");
};"""})
    worker.send_json(REQUEST, 11, request_head())
    time.sleep(0.3)
    worker.send(CANCEL, 11)
    logs = sorted(worker.next().json()["message"] for _ in range(2))
    assert logs == ["aborted: Interrupted", "completed rejected: Interrupted"]
    assert exchange(worker, 12, request_head(path="/quick"))[2] == b"quick"
    worker.send(CREDIT, 11)  # late frames about a cancelled request are ignored
    assert exchange(worker, 13, request_head(path="/quick"))[2] == b"quick"


PERMISSIONS = """
async function errorName(action) {
  try { await action(); return "allowed"; } catch (error) { return error.name; }
}
export default async (req) => {
  const results = {
    read_outside: await errorName(() => Deno.readTextFile("/etc/hostname")),
    read_inside: await errorName(() => Deno.readTextFile(new URL("./data.txt", import.meta.url))),
    env_declared: Deno.env.get("DECLARED"),
    env_undeclared: await errorName(() => Deno.env.get("HOME")),
    run: await errorName(() => new Deno.Command("/bin/true").output()),
    run_by_name: await errorName(() => new Deno.Command("true").output()),
    fetch_undeclared: await errorName(() => fetch("http://undeclared.test:8080/")),
    write: await errorName(() => Deno.writeTextFile(new URL("./out.txt", import.meta.url), "x")),
  };
  return Response.json(results);
};
"""


def test_permissions_are_scoped_to_the_function(start):
    worker = start({"main.js": PERMISSIONS, "data.txt": "mine"},
                   allow_net=["example.com"], allow_env={"DECLARED": "yes"})
    results = json.loads(exchange(worker, 1, request_head())[2])
    # Deno 2 reports a refused permission as Deno.errors.NotCapable (not PermissionDenied).
    assert results == {"read_outside": "NotCapable", "read_inside": "allowed", "env_declared": "yes",
                       "env_undeclared": "NotCapable", "run": "NotCapable",
                       # the cleared environment has no PATH: a bare name is not even found
                       "run_by_name": "NotFound",
                       "fetch_undeclared": "NotCapable", "write": "NotCapable"}


def test_drain_finishes_in_flight_requests_then_exits(start):
    worker = start({"main.js": """
export default async () => {
  await new Promise((resolve) => setTimeout(resolve, 400));
  return new Response("finished");
};"""})
    worker.send_json(REQUEST, 1, request_head())
    time.sleep(0.1)
    worker.send(DRAIN, 0)
    worker.send_json(REQUEST, 2, request_head())
    refused = worker.next()
    assert (refused.type, refused.id) == (ERROR, 2) and "draining" in refused.json()["message"]
    frames = frames_until(worker, lambda frame: frame.type == RESPONSE_END)
    assert [frame.type for frame in frames] == [RESPONSE_HEAD, RESPONSE_BODY, RESPONSE_END]
    try:
        worker.send(CREDIT, 1)  # a late frame to a worker that is exiting changes nothing
    except BrokenPipeError:
        pass  # it had already exited: the drain is done
    assert worker.next() is None
    assert worker.process.wait(timeout=10) == 0


def test_stdin_eof_exits_at_once(start):
    worker = start({"main.js": 'export default async () => { await new Promise(() => {}); };'})
    worker.send_json(REQUEST, 1, request_head())
    worker.process.stdin.close()
    assert worker.process.wait(timeout=10) == 0


def test_frames_split_across_reads_are_reassembled(start):
    worker = start({"main.js": ECHO})
    data = (encode_frame(REQUEST, 1, json.dumps(request_head("POST", body=True)).encode())
            + encode_frame(REQUEST, 2, json.dumps(request_head()).encode()))
    for offset in range(0, len(data), 7):
        worker.process.stdin.write(data[offset:offset + 7])
        worker.process.stdin.flush()
        time.sleep(0.002)
    pull = worker.next()
    assert (pull.type, pull.id) == (BODY_PULL, 1)
    worker.send(BODY_END, 1)
    bodies = {1: b"", 2: b""}
    ended = set()
    while ended != {1, 2}:
        frame = worker.next()
        if frame.type == RESPONSE_BODY:
            bodies[frame.id] += frame.payload
            worker.send(CREDIT, frame.id)
        elif frame.type == RESPONSE_END:
            ended.add(frame.id)
    assert bodies == {1: b"POST  null []", 2: b"GET  null []"}


@pytest.mark.parametrize("bad_frame", [
    encode_frame(0x7F, 1),
    encode_frame(REQUEST, 1, b"{not json"),
    encode_frame(REQUEST, 0, json.dumps(request_head()).encode()),
    encode_frame(BODY, 1, b"unasked"),
    b"\x01\x00\x00\x00\x01\xff\xff\xff\xff",  # payload length beyond 1 MiB
], ids=["unknown type", "bad json", "request id 0", "body without pull", "oversized"])
def test_malformed_frame_ends_the_worker_with_code_2(start, bad_frame):
    worker = start({"main.js": 'export default async () => { await new Promise(() => {}); };'})
    if bad_frame.startswith(bytes([BODY])):
        worker.send_json(REQUEST, 1, request_head())  # in flight, but never pulled
    worker.process.stdin.write(bad_frame)
    worker.process.stdin.flush()
    assert worker.process.wait(timeout=10) == 2
    time.sleep(0.1)  # let the stderr thread take the last bytes
    assert "edge runner: protocol error" in worker.stderr()
