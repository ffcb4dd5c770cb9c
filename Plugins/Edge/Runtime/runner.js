// MeltyBase Edge worker: runs one function version's entry module and serves its requests
// over binary frames on stdin/stdout (docs/edge-worker-protocol.md).
//
//   deno run --no-prompt --no-config --allow-read=<function dir> ... runner.js <entry module>
//
// The function's code runs in this process, so everything it could use to write to stdout
// or read stdin (console, Deno.stdout/stderr/stdin, process.stdout/stderr/stdin) is replaced
// by stand-ins before the entry module is imported; its output becomes LOG frames.

import { AsyncLocalStorage } from "node:async_hooks";
import { Console } from "node:console";
import process from "node:process";
import { Readable } from "node:stream";

// The real streams and exit, kept before any function code can replace or shadow them.
const realStdin = Deno.stdin;
const realStdout = Deno.stdout;
const realStderr = Deno.stderr;
const exit = Deno.exit;

const Frame = Object.freeze({
  REQUEST: 0x01,
  BODY: 0x02,
  BODY_END: 0x03,
  CANCEL: 0x04,
  CREDIT: 0x05,
  DRAIN: 0x06,
  READY: 0x11,
  BODY_PULL: 0x12,
  RESPONSE_HEAD: 0x13,
  RESPONSE_BODY: 0x14,
  RESPONSE_END: 0x15,
  ERROR: 0x16,
  LOG: 0x17,
});
const HEADER_SIZE = 9;
const MAX_PAYLOAD = 1024 * 1024;
const MAX_RESPONSE_CHUNK = 64 * 1024;
const CREDIT_WINDOW = 8;
// Keeps a LOG or ERROR frame far below MAX_PAYLOAD even if every character is escaped.
const MAX_TEXT = 64 * 1024;
// Output frames are written in batches of about this size (fewer syscalls under load).
const WRITE_BATCH = 256 * 1024;
// stdin is read in pieces of up to this size.
const READ_BUFFER = 256 * 1024;

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const lenientDecoder = new TextDecoder();

// ---------------------------------------------------------------------------------------
// Output: every frame goes through one ordered queue, so frames never interleave.

const outQueue = [];
let pumping = false;
let lastWrite = Promise.resolve();

function encodeFrame(type, id, payload) {
  const frame = new Uint8Array(HEADER_SIZE + payload.byteLength);
  const view = new DataView(frame.buffer);
  view.setUint8(0, type);
  view.setUint32(1, id);
  view.setUint32(5, payload.byteLength);
  frame.set(payload, HEADER_SIZE);
  return frame;
}

/** Queues a frame; the promise resolves once it has been written to stdout. */
function send(type, id, payload = EMPTY) {
  const written = new Promise((resolve) => {
    outQueue.push({ frame: encodeFrame(type, id, payload), resolve });
  });
  lastWrite = written;
  if (!pumping) {
    // Written once the code queuing frames yields: frames queued together (a small
    // response's head, body and end) leave in one write, which the host hands over whole.
    pumping = true;
    queueMicrotask(pump);
  }
  return written;
}

function sendJSON(type, id, value) {
  return send(type, id, encoder.encode(JSON.stringify(value)));
}

async function pump() {
  while (outQueue.length > 0) {
    let size = 0;
    let count = 0;
    while (count < outQueue.length && (count === 0 || size < WRITE_BATCH)) {
      size += outQueue[count].frame.byteLength;
      count += 1;
    }
    const batch = outQueue.splice(0, count);
    const bytes = new Uint8Array(size);
    let offset = 0;
    for (const { frame } of batch) {
      bytes.set(frame, offset);
      offset += frame.byteLength;
    }
    try {
      // Written synchronously (no hand-off to a thread per write): the host reads our stdout
      // on its event loop as it fills, so a full pipe only means the host is behind, and
      // waiting for it is the back-pressure.
      for (let written = 0; written < bytes.byteLength;) {
        written += realStdout.writeSync(bytes.subarray(written));
      }
    } catch {
      exit(0); // The host closed our stdout: it is gone or no longer wants us.
    }
    for (const { resolve } of batch) resolve();
  }
  pumping = false;
}

async function flushAndExit(code) {
  await lastWrite;
  exit(code);
}

function protocolError(message) {
  realStderr.writeSync(encoder.encode(`edge runner: protocol error: ${message}\n`));
  exit(2);
}

// ---------------------------------------------------------------------------------------
// Logs: the function's output, tagged with the request its code is running for.

const currentRequest = new AsyncLocalStorage();

function truncate(text) {
  return text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT)}… (truncated)`;
}

function emitLog(level, message, id = currentRequest.getStore() ?? 0) {
  sendJSON(Frame.LOG, id, { level, message: truncate(message) });
}

function describeError(error) {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  try {
    return typeof error === "string" ? error : Deno.inspect(error);
  } catch {
    return "(a value that cannot be printed)";
  }
}

/** Text written as bytes (Deno.stdout.write, process.stdout.write) -> one LOG frame. */
function bytesToMessage(chunk) {
  const text = typeof chunk === "string" ? chunk : lenientDecoder.decode(chunk);
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

function outputStandIn(level) {
  const writeSync = (bytes) => {
    emitLog(level, bytesToMessage(bytes));
    return bytes.byteLength;
  };
  return {
    write: async (bytes) => writeSync(bytes),
    writeSync,
    get writable() {
      return new WritableStream({ write: (chunk) => void writeSync(chunk) });
    },
    isTerminal: () => false,
    close() {},
  };
}

const stdinStandIn = {
  read: async () => null,
  readSync: () => null,
  get readable() {
    return new ReadableStream({ start: (controller) => controller.close() });
  },
  isTerminal: () => false,
  setRaw() {},
  close() {},
};

function replaceProperty(target, name, value) {
  Object.defineProperty(target, name, { value, configurable: true, writable: true });
}

function installStandIns() {
  replaceProperty(Deno, "stdin", stdinStandIn);
  replaceProperty(Deno, "stdout", outputStandIn("log"));
  replaceProperty(Deno, "stderr", outputStandIn("error"));

  // Node's process streams would otherwise reach the real file descriptors.
  for (const [name, level] of [["stdout", "log"], ["stderr", "error"]]) {
    process[name].write = (chunk, encoding, callback) => {
      emitLog(level, bytesToMessage(chunk));
      const done = typeof encoding === "function" ? encoding : callback;
      if (typeof done === "function") queueMicrotask(done);
      return true;
    };
  }
  replaceProperty(process, "stdin", Readable.from([]));

  // A Node Console does the formatting (%s, groups, table, ...); its two sinks turn each
  // printed text into a LOG. The level is that of the console method being called.
  let methodLevel = null;
  const sink = (streamLevel) => ({
    write(text) {
      emitLog(methodLevel ?? streamLevel, bytesToMessage(text));
      return true;
    },
  });
  const formatter = new Console({ stdout: sink("log"), stderr: sink("error"), ignoreErrors: false });
  const levels = { debug: "debug", info: "info", log: "log", warn: "warn", error: "error" };
  for (const name of Object.keys(console)) {
    if (typeof formatter[name] !== "function") continue;
    const level = levels[name] ?? null;
    console[name] = (...args) => {
      methodLevel = level;
      try {
        formatter[name](...args);
      } finally {
        methodLevel = null;
      }
    };
  }

  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    emitLog("error", `Uncaught ${describeError(event.error ?? event.message)}`);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    emitLog("error", `Unhandled promise rejection: ${describeError(event.reason)}`);
  });
}

// ---------------------------------------------------------------------------------------
// Handler discovery: Deno.serve is replaced by a stand-in that only records the handler.

let servedHandler = null;
let acceptingServe = true;
let serverFinished;
const finished = new Promise((resolve) => (serverFinished = resolve));

function serveStandIn(optionsOrHandler, maybeHandler) {
  if (!acceptingServe) {
    throw new TypeError("Deno.serve can only be called while the function's module is loading");
  }
  const handler = typeof optionsOrHandler === "function"
    ? optionsOrHandler
    : typeof maybeHandler === "function"
    ? maybeHandler
    : optionsOrHandler?.handler;
  if (typeof handler !== "function") throw new TypeError("Deno.serve was called without a handler function");
  if (servedHandler !== null) throw new TypeError("Deno.serve can be called only once in an Edge function");
  servedHandler = handler;
  return {
    finished,
    addr: { transport: "tcp", hostname: "127.0.0.1", port: 0 },
    shutdown: async () => {}, // The host decides when a worker stops (DRAIN).
    ref() {},
    unref() {},
    [Symbol.asyncDispose]: async () => {},
  };
}

function findHandler(module) {
  const exported = module.default;
  if (typeof exported === "function") return exported;
  if (typeof exported?.fetch === "function") return (request, info) => exported.fetch(request, info);
  return servedHandler;
}

/** The first file:///...:line:col in an error, preferring the function's own files. */
function errorLocation(error, functionDirURL) {
  const text = `${error?.stack ?? ""}\n${error?.message ?? ""}`;
  const locations = [...text.matchAll(/file:\/\/\/[^\s()'"]+?:\d+:\d+/g)].map((match) => match[0]);
  return locations.find((location) => location.startsWith(functionDirURL)) ??
    locations.find((location) => !location.startsWith(import.meta.url)) ?? null;
}

// ---------------------------------------------------------------------------------------
// Requests

/** id -> state of every request in flight (removed once answered or cancelled). */
const requests = new Map();
let handler = null;
let draining = false;

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

function startRequest(id, head) {
  const state = {
    id,
    method: head.method,
    abort: new AbortController(),
    pendingPull: null, // deferred answered by BODY / BODY_END
    bodyEnded: false,
    // A body the host pushes whole ("pushed": true): its chunks as they arrive, unasked.
    pushed: head.pushed ? { chunks: [], bytes: 0, ended: false, waiter: null } : null,
    sent: 0, // RESPONSE_BODY frames sent
    credited: 0, // CREDIT frames received
    creditWaiter: null,
    responseReader: null,
    completed: deferred(),
  };
  state.completed.promise.catch(() => {}); // Deno's own info.completed never goes unhandled.
  requests.set(id, state);
  if (state.pushed === null) return void currentRequest.run(id, () => respond(state, head));
  // After the frames of this read: a pushed body that arrived whole with its REQUEST (the
  // usual case) becomes the Request's bytes instead of a stream.
  queueMicrotask(() => {
    if (requests.get(id) === state) currentRequest.run(id, () => respond(state, head));
  });
}

/** A pushed BODY or BODY_END (`chunk` null) of a request whose head said "pushed". */
function receivePushed(state, chunk) {
  const pushed = state.pushed;
  if (pushed.ended) protocolError(`BODY for request ${state.id} after its pushed BODY_END`);
  if (chunk === null) {
    pushed.ended = true;
  } else {
    pushed.bytes += chunk.byteLength;
    if (pushed.bytes > MAX_PAYLOAD) protocolError(`pushed body of request ${state.id} exceeds ${MAX_PAYLOAD} bytes`);
    pushed.chunks.push(chunk.slice());
  }
  const waiter = pushed.waiter;
  pushed.waiter = null;
  waiter?.resolve();
}

/** The next pushed chunk (null at the end), waiting for it to arrive. */
async function nextPushed(state) {
  const pushed = state.pushed;
  while (pushed.chunks.length === 0 && !pushed.ended) {
    if (requests.get(state.id) !== state) {
      throw new Deno.errors.Interrupted("The request is over; its body cannot be read any more");
    }
    pushed.waiter = deferred();
    await pushed.waiter.promise;
  }
  return pushed.chunks.length > 0 ? pushed.chunks.shift() : null;
}

/** A pushed body that is complete: its bytes (one chunk, or the chunks joined). */
function wholePushed(pushed) {
  if (pushed.chunks.length === 1) return pushed.chunks[0];
  const bytes = new Uint8Array(pushed.bytes);
  let offset = 0;
  for (const chunk of pushed.chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** Next body chunk (null at the end); one BODY_PULL per call. */
function pullBody(state) {
  if (requests.get(state.id) !== state) {
    // Answered or cancelled: the host has forgotten this request and would never answer.
    return Promise.reject(new Deno.errors.Interrupted("The request is over; its body cannot be read any more"));
  }
  state.pendingPull = deferred();
  send(Frame.BODY_PULL, state.id);
  return state.pendingPull.promise;
}

function requestBody(state) {
  if (state.pushed?.ended) {
    const bytes = wholePushed(state.pushed);
    state.pushed.chunks = [];
    state.bodyEnded = true;
    return bytes;
  }
  const next = state.pushed ? () => nextPushed(state) : () => pullBody(state);
  return new ReadableStream({
    async pull(controller) {
      for (;;) { // An empty BODY answers nothing the reader can use: pull again.
        const chunk = await next();
        if (chunk === null) return controller.close();
        if (chunk.byteLength > 0) return controller.enqueue(chunk);
      }
    },
  }, { highWaterMark: 0 });
}

async function respond(state, head) {
  let response;
  try {
    const request = new Request(head.url, {
      method: head.method,
      headers: head.headers,
      body: head.body ? requestBody(state) : null,
      signal: state.abort.signal,
      duplex: "half",
    });
    const info = {
      remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 0 },
      completed: state.completed.promise,
    };
    response = await handler(request, info);
    if (!(response instanceof Response)) {
      throw new TypeError(`The handler returned ${Deno.inspect(response)} instead of a Response`);
    }
    if (response.bodyUsed || response.body?.locked) throw new TypeError("The handler's Response body was already used");
  } catch (error) {
    if (requests.get(state.id) !== state) return; // Cancelled meanwhile.
    sendJSON(Frame.ERROR, state.id, {
      message: truncate(error instanceof Error ? `${error.name}: ${error.message}` : describeError(error)),
      stack: truncate(error instanceof Error ? error.stack ?? "" : ""),
    });
    finish(state, error);
    return;
  }
  if (requests.get(state.id) !== state) return void response.body?.cancel().catch(() => {});

  const responseHead = { status: response.status, headers: [...response.headers] };
  if (response.body === null || state.method === "HEAD") {
    response.body?.cancel().catch(() => {});
    sendJSON(Frame.RESPONSE_HEAD, state.id, responseHead);
    send(Frame.RESPONSE_END, state.id);
    finish(state, null);
    return;
  }
  // A body that is already complete (a string, bytes, a stream already closed) is sent with
  // its head and end in one go; one still being produced starts streaming at its first chunk
  // (the look-ahead waits at most one turn of the event loop for the second read).
  let lookahead = null;
  try {
    state.responseReader = response.body.getReader();
    const first = await state.responseReader.read();
    if (requests.get(state.id) !== state) return;
    if (first.done) {
      sendJSON(Frame.RESPONSE_HEAD, state.id, responseHead);
      send(Frame.RESPONSE_END, state.id);
      finish(state, null);
      return;
    }
    if (!(first.value instanceof Uint8Array)) throw new TypeError("A response body chunk is not a Uint8Array");
    const second = state.responseReader.read();
    const settled = await Promise.race([second, afterMicrotasks()]);
    if (requests.get(state.id) !== state) return;
    if (settled !== NEXT_TURN && settled.done && first.value.byteLength <= MAX_RESPONSE_CHUNK) {
      sendJSON(Frame.RESPONSE_HEAD, state.id, responseHead);
      send(Frame.RESPONSE_BODY, state.id, first.value);
      send(Frame.RESPONSE_END, state.id);
      finish(state, null);
      return;
    }
    sendJSON(Frame.RESPONSE_HEAD, state.id, responseHead);
    lookahead = { first: first.value, second };
  } catch (error) {
    if (requests.get(state.id) !== state) return;
    sendJSON(Frame.ERROR, state.id, {
      message: truncate(error instanceof Error ? `${error.name}: ${error.message}` : describeError(error)),
      stack: truncate(error instanceof Error ? error.stack ?? "" : ""),
    });
    finish(state, error);
    return;
  }
  try {
    for (;;) {
      let chunk;
      if (lookahead?.first) {
        chunk = { value: lookahead.first, done: false };
        lookahead.first = null;
      } else if (lookahead?.second) {
        chunk = await lookahead.second;
        lookahead = null;
      } else {
        chunk = await state.responseReader.read();
      }
      const { value, done } = chunk;
      if (requests.get(state.id) !== state) return;
      if (done) break;
      if (!(value instanceof Uint8Array)) throw new TypeError("A response body chunk is not a Uint8Array");
      for (let offset = 0; offset < value.byteLength; offset += MAX_RESPONSE_CHUNK) {
        await creditAvailable(state);
        state.sent += 1;
        send(Frame.RESPONSE_BODY, state.id, value.subarray(offset, offset + MAX_RESPONSE_CHUNK));
      }
    }
  } catch (error) {
    if (requests.get(state.id) !== state) return;
    // The LOG first: at RESPONSE_END the host may close the request's log.
    emitLog("error", `The response body failed after its head was sent: ${describeError(error)}`, state.id);
    send(Frame.RESPONSE_END, state.id);
    finish(state, error);
    return;
  }
  send(Frame.RESPONSE_END, state.id);
  finish(state, null);
}

/** Settles on the next turn of the event loop, after every pending microtask. */
const NEXT_TURN = Symbol("next turn");
function nextTurn() {
  return new Promise((resolve) => setTimeout(() => resolve(NEXT_TURN), 0));
}

/** Settles with NEXT_TURN after a few rounds of microtasks: long enough for a body that is
 *  already complete (a string, bytes, a closed stream) to report its end, without the
 *  cost of a timer per request. A body still being produced is streamed. */
const LOOKAHEAD_MICROTASKS = 8;
function afterMicrotasks() {
  let promise = Promise.resolve();
  for (let round = 0; round < LOOKAHEAD_MICROTASKS; round += 1) promise = promise.then(() => {});
  return promise.then(() => NEXT_TURN);
}

/** Resolves when fewer than CREDIT_WINDOW chunks of this request are unacknowledged. */
function creditAvailable(state) {
  if (state.sent - state.credited < CREDIT_WINDOW) return Promise.resolve();
  state.creditWaiter = deferred();
  return state.creditWaiter.promise;
}

/** The request is answered (error = null), failed, or cancelled: forget it. */
function finish(state, error) {
  if (requests.get(state.id) !== state) return;
  requests.delete(state.id);
  const reason = error ?? new Deno.errors.Interrupted("The request ended before its body was read");
  state.pendingPull?.reject(reason);
  state.pushed?.waiter?.reject(reason);
  state.creditWaiter?.reject(reason);
  if (error === null) state.completed.resolve();
  else state.completed.reject(error);
  if (draining && requests.size === 0) finishDrain();
}

function cancel(state) {
  const reason = new Deno.errors.Interrupted("The request was cancelled");
  finish(state, reason);
  state.abort.abort(reason);
  state.responseReader?.cancel(reason).catch(() => {});
}

function finishDrain() {
  serverFinished();
  flushAndExit(0);
}

// ---------------------------------------------------------------------------------------
// Input: frames from the host.

function parseRequestHead(payload) {
  let head;
  try {
    head = JSON.parse(strictDecoder.decode(payload));
  } catch (error) {
    protocolError(`REQUEST payload is not JSON: ${error.message}`);
  }
  const validHeaders = Array.isArray(head?.headers) && head.headers.every((pair) =>
    Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string" && typeof pair[1] === "string"
  );
  if (
    typeof head?.method !== "string" || typeof head.url !== "string" || !validHeaders ||
    typeof head.body !== "boolean" || !(head.pushed === undefined || typeof head.pushed === "boolean") ||
    (head.pushed === true && !head.body)
  ) {
    protocolError(
      "REQUEST needs method, url (strings), headers ([[name, value], ...]), body (boolean) and, with a body, " +
        "optionally pushed (boolean)",
    );
  }
  return head;
}

function handleFrame(type, id, payload) {
  const needsEmpty = [Frame.BODY_END, Frame.CANCEL, Frame.CREDIT, Frame.DRAIN];
  if (needsEmpty.includes(type) && payload.byteLength > 0) protocolError(`frame type ${type} must have no payload`);
  if (type === Frame.DRAIN) {
    if (id !== 0) protocolError("DRAIN must have id 0");
    draining = true;
    if (requests.size === 0) finishDrain();
    return;
  }
  if (id === 0) protocolError(`frame type ${type} needs a request id`);
  const state = requests.get(id);
  switch (type) {
    case Frame.REQUEST: {
      const head = parseRequestHead(payload);
      if (state) protocolError(`REQUEST ${id} is already in flight`);
      if (draining) return void sendJSON(Frame.ERROR, id, { message: "The worker is draining", stack: "" });
      return startRequest(id, head);
    }
    // Frames about a request that was answered or cancelled can cross ours: ignore them.
    case Frame.BODY:
    case Frame.BODY_END: {
      if (!state) return;
      if (state.pushed) return receivePushed(state, type === Frame.BODY ? payload : null);
      if (!state.pendingPull || state.bodyEnded) protocolError(`BODY for request ${id} that did not pull`);
      const pull = state.pendingPull;
      state.pendingPull = null;
      if (type === Frame.BODY_END) state.bodyEnded = true;
      return pull.resolve(type === Frame.BODY ? payload.slice() : null);
    }
    case Frame.CANCEL:
      return state && cancel(state);
    case Frame.CREDIT: {
      if (!state) return;
      if (state.credited >= state.sent) protocolError(`CREDIT for request ${id} beyond the chunks sent`);
      state.credited += 1;
      const waiter = state.creditWaiter;
      state.creditWaiter = null;
      return waiter?.resolve();
    }
    default:
      protocolError(`unknown frame type 0x${type.toString(16).padStart(2, "0")}`);
  }
}

/** Reads stdin straight into one reused buffer (no stream wrapper: one op per read).
 *  Payloads are views into it, used before the next read (handleFrame copies what it keeps);
 *  the bytes of a frame cut by the read's end are copied aside until the rest arrives. */
async function readFrames() {
  const input = new Uint8Array(READ_BUFFER);
  let partial = EMPTY;
  for (;;) {
    let count;
    try {
      count = await realStdin.read(input);
    } catch {
      exit(0);
    }
    if (count === null) exit(0); // The host closed our stdin: stop at once.
    const buffer = partial.byteLength === 0 ? input.subarray(0, count) : concat(partial, input.subarray(0, count));
    let offset = 0;
    while (buffer.byteLength - offset >= HEADER_SIZE) {
      const view = new DataView(buffer.buffer, buffer.byteOffset + offset, HEADER_SIZE);
      const length = view.getUint32(5);
      if (length > MAX_PAYLOAD) protocolError(`frame payload of ${length} bytes exceeds ${MAX_PAYLOAD}`);
      if (buffer.byteLength - offset < HEADER_SIZE + length) break;
      const payload = buffer.subarray(offset + HEADER_SIZE, offset + HEADER_SIZE + length);
      handleFrame(view.getUint8(0), view.getUint32(1), payload);
      offset += HEADER_SIZE + length;
    }
    partial = offset === buffer.byteLength ? EMPTY : buffer.slice(offset);
  }
}

function concat(a, b) {
  const joined = new Uint8Array(a.byteLength + b.byteLength);
  joined.set(a, 0);
  joined.set(b, a.byteLength);
  return joined;
}

// ---------------------------------------------------------------------------------------
// Start: stand-ins, import the entry, READY, then serve.

async function main() {
  const entryPath = Deno.args[0];
  if (!entryPath) {
    realStderr.writeSync(encoder.encode("usage: runner.js <absolute path of the entry module>\n"));
    exit(2);
  }
  const entryURL = new URL(entryPath, "file:///").href;
  const functionDirURL = new URL(".", entryURL).href;

  installStandIns();
  replaceProperty(Deno, "serve", serveStandIn);
  let module;
  try {
    module = await import(entryURL);
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : describeError(error);
    sendJSON(Frame.READY, 0, { ok: false, error: truncate(message), location: errorLocation(error, functionDirURL) });
    return flushAndExit(1);
  }
  acceptingServe = false;
  handler = findHandler(module);
  if (handler === null) {
    sendJSON(Frame.READY, 0, {
      ok: false,
      error: `${entryURL} exports no handler: export default a function (req, info) => Response, ` +
        "or an object with a fetch(req, info) method, or call Deno.serve(handler) when the module loads",
      location: null,
    });
    return flushAndExit(1);
  }
  await warmUp();
  sendJSON(Frame.READY, 0, { ok: true });
  await readFrames();
}

/** Runs the platform code every request goes through (Request with a streamed body,
 *  headers, Response bodies read as streams, JSON, text coding) once before READY, so the
 *  first real request does not pay for compiling it. The function's handler is not called. */
async function warmUp() {
  const body = new ReadableStream({ pull(controller) { controller.enqueue(encoder.encode("{}")); controller.close(); } });
  const request = new Request("http://warm.up/", { method: "POST", headers: [["content-type", "application/json"]], body });
  JSON.parse(await request.text());
  for (const response of [new Response("warm"), Response.json({ warm: true })]) {
    const reader = response.body.getReader();
    while (!(await reader.read()).done);
    void [...response.headers];
  }
  await Promise.race([Promise.resolve(), nextTurn()]);
  encodeFrame(Frame.LOG, 0, encoder.encode(JSON.stringify({ level: "debug", message: "" })));
}

main();
