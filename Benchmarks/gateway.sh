#!/usr/bin/env bash
# Gateway and plugin-dispatch benchmark (shared design: performance.md).
#
# In one run, with the same load tool (wrk, keep-alive connections, at each size
# of CONNECTIONS, 16 and 64 by default):
#   gateway          kernel GET /v1/system/status  vs  nginx returning the same
#                    bytes and headers (worker_processes 2, access_log off), and
#                    vs bench-nio-peer (Benchmarks/NIOPeer: a bare swift-nio HTTP/1
#                    server, one thread per core, one handler returning them)
#   plugin dispatch  C plugin GET /p/demo/echo-c/echo  vs  the kernel-native
#                    GET /v1/system/echo (both answer "echo")
# Prints a table per size, then one line per figure and size:
# `name: ours X req/s (p99 P ms), peer Y req/s (p99 Q ms), ratio R`.
# A benchmark, not a test: it asserts no timing. It exits non-zero only when
# something could not be measured (a route that does not answer 200, say).
#
# usage: Benchmarks/gateway.sh
# env:   BIN=<dir>         release build folder holding meltybase (default:
#                          build it as scripts/run does)
#        DURATION=10       seconds of each measured wrk run
#        WARMUP=2          seconds of an unmeasured wrk run before each (0: none)
#        CONNECTIONS="16 64"  wrk's -c, one measured round per size
#        THREADS=2         wrk's -t
#        CONFIG=<file>     plugins config to copy, with rate limits removed
#        RATE_LIMITS=lifted  keep the Redis rate limiter in the path (limits set
#                          so high they never refuse) to measure its cost;
#                          default "off" measures the gateway alone
#                          (default: <repo>/plugins.toml)
#        REQUEST_HEADER='Name: value'  sent with every request (auth, say)
#        SKIP_SETUP=1      do not run scripts/setup.sh --bench first
#        KEEP_TMP=1        keep the temp folder (server and nginx logs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DURATION="${DURATION:-10}"
DURATION="${DURATION%s}"
WARMUP="${WARMUP:-2}"
WARMUP="${WARMUP%s}"
CONNECTIONS="${CONNECTIONS:-16 64}"
THREADS="${THREADS:-2}"
CONFIG="${CONFIG:-$ROOT/plugins.toml}"
REQUEST_HEADER="${REQUEST_HEADER:-}"
STARTUP_TIMEOUT=90

STATUS_PATH=/v1/system/status
KERNEL_ECHO_PATH=/v1/system/echo
PLUGIN_ECHO_PATH=/p/demo/echo-c/echo

die() { printf 'gateway: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'gateway: %s\n' "$*" >&2; }

# shellcheck disable=SC2086 # CONNECTIONS is a list of sizes
for n in "$DURATION" "$WARMUP" $CONNECTIONS "$THREADS"; do
  [[ $n =~ ^[0-9]+$ ]] || die "DURATION, WARMUP, CONNECTIONS and THREADS take whole numbers (got '$n')"
done
((DURATION > 0)) || die "DURATION must be at least 1 second"

if [[ -z ${SKIP_SETUP:-} ]]; then
  bash "$ROOT/scripts/setup.sh" --bench >&2
fi
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
for tool in wrk nginx curl python3 setsid timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs it)"
done

if [[ -z ${BIN:-} ]]; then
  echo "Building MeltyBase (release; first build takes about 7 minutes on 2 cores)..." >&2
  (
    cd "$ROOT"
    swift build -c release --product meltybase
    swift build -c release --product EchoSwiftPlugin
    swift build -c release --product bench-nio-peer
  ) >&2
  BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)"
  if [[ -f $ROOT/scripts/build-c-plugins.sh ]]; then
    bash "$ROOT/scripts/build-c-plugins.sh" "$BIN" >&2
  fi
fi
[[ -x $BIN/meltybase ]] || die "no meltybase in BIN=$BIN"
[[ -f $CONFIG ]] || die "config $CONFIG not found"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/meltybase-gateway.XXXXXX")"
# Readable by others: the embedded Postgres may run as another user.
chmod 755 "$TMP"
server_pid=""
nginx_pid=""
load_pid=""

# True while the process exists and is not a zombie.
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ ${stat:0:1} != Z ]]
}

# Sends TERM, waits up to $2 seconds, then KILL; reaps our child.
# shellcheck disable=SC2317 # reached through the traps
stop_process() {
  local pid=$1 grace=$2 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # reached through the traps
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $load_pid ]]; then stop_process "$load_pid" 2; fi
  if [[ -n $nginx_pid ]]; then stop_process "$nginx_pid" 5; fi
  if [[ -n ${nio_pid:-} ]]; then stop_process "$nio_pid" 5; fi
  if [[ -n $server_pid ]]; then
    # The kernel stops its embedded Postgres and Redis on TERM; anything left
    # in its process group (it was started as a group leader) goes after it.
    stop_process "$server_pid" 20
    if kill -TERM -- "-$server_pid" 2>/dev/null; then
      sleep 2
      kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
  fi
  if [[ -n ${KEEP_TMP:-} ]]; then note "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

header_args=()
if [[ -n $REQUEST_HEADER ]]; then header_args=(-H "$REQUEST_HEADER"); fi

# --- the kernel ----------------------------------------------------------------

kernel_port="$(free_port)"
mkdir -p "$TMP/data"
# The copy lifts the rate limits to the highest values the config accepts
# (the defaults, 2000 requests/s per client, would throttle the load into
# 429s); everything else is as configured. Plugin paths resolve against the
# executable's folder, so the copy loads the same plugins.
python3 - "$CONFIG" "$TMP/plugins.toml" "${RATE_LIMITS:-off}" <<'PY'
import json, os, re, sys
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
here = os.path.dirname(os.path.abspath(src))
unlimited = "{ rate = 10000000, burst = 100000000 }"
out, skipping = [], False
for line in open(src, encoding="utf-8").read().splitlines():
    header = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", line)
    if header:
        name = header.group(1).replace(" ", "")
        skipping = name == "rate_limit" or name.endswith(".rate_limit")
    if skipping:
        continue
    # A portal's own limit, written inline.
    if mode == "off" and re.match(r"^\s*rate_limit\s*=", line):
        continue
    line = re.sub(r"^(\s*rate_limit\s*=\s*)\{[^}]*\}", lambda m: m.group(1) + unlimited, line)
    # Paths that resolve against the config's folder must survive the move.
    line = re.sub(r'^(\s*(?:plugin_dir|data_dir|tls_certificate|tls_key|client_ca)\s*=\s*)"([^"]+)"',
                  lambda m: m.group(1) + (f'"{m.group(2)}"' if m.group(2).startswith("/") else
                                          json.dumps(os.path.join(here, m.group(2)))), line)
    out.append(line)
if mode != "off":
    out += ["", "# Added by Benchmarks/gateway.sh: measure the load, do not throttle it.",
            "[rate_limit]", f"per_client = {unlimited}", f"per_portal = {unlimited}"]
open(dst, "w", encoding="utf-8").write("\n".join(out) + "\n")
PY
note "starting meltybase on 127.0.0.1:$kernel_port (log: $TMP/server.log)"
# setsid: a process group of its own, so cleanup can reach its children too.
# (No job control in this script, so setsid execs in place: $! is meltybase.)
(cd "$ROOT" && exec setsid "$BIN/meltybase" serve --config "$TMP/plugins.toml" \
  --data-dir "$TMP/data" --port "$kernel_port") >"$TMP/server.log" 2>&1 </dev/null &
server_pid=$!

kernel="http://127.0.0.1:$kernel_port"
deadline=$((SECONDS + STARTUP_TIMEOUT))
until curl -sf -o /dev/null --max-time 2 "${header_args[@]}" "$kernel$STATUS_PATH"; do
  if ! alive "$server_pid"; then
    tail -n 30 "$TMP/server.log" >&2 || true
    die "meltybase exited before answering $STATUS_PATH (log above)"
  fi
  if ((SECONDS >= deadline)); then
    tail -n 30 "$TMP/server.log" >&2 || true
    die "meltybase did not answer $STATUS_PATH within $STARTUP_TIMEOUT s (log above)"
  fi
  sleep 0.2
done
note "meltybase answers after $((SECONDS - deadline + STARTUP_TIMEOUT)) s"

# Saves the headers and the exact body bytes of one GET; prints the status.
fetch() {
  local name=$1 url=$2 status
  status="$(curl -sS --max-time 5 "${header_args[@]}" -D "$TMP/$name.headers" -o "$TMP/$name.body" \
    -w '%{http_code}' "$url")" || true
  echo "${status:-000}"
}

declare -A code=()
code[status]="$(fetch status "$kernel$STATUS_PATH")"
code[kernel_echo]="$(fetch kernel_echo "$kernel$KERNEL_ECHO_PATH")"
code[plugin_echo]="$(fetch plugin_echo "$kernel$PLUGIN_ECHO_PATH")"
for name in kernel_echo plugin_echo; do
  if [[ ${code[$name]} == 200 && "$(cat "$TMP/$name.body")" != echo ]]; then
    note "warning: $name answered '$(head -c 80 "$TMP/$name.body")', expected 'echo'"
  fi
done

# --- nginx with the same bytes -------------------------------------------------

nginx_port="$(free_port)"
while [[ $nginx_port == "$kernel_port" ]]; do nginx_port="$(free_port)"; done
mkdir -p "$TMP/nginx/logs"
if [[ ${code[status]} == 200 ]]; then
  # Python writes the config: it keeps the body bytes exact and escapes them
  # for nginx ('\', "'" and "$", which would start a variable).
  python3 - "$TMP" "$nginx_port" "$STATUS_PATH" <<'PY'
import sys
tmp, port, path = sys.argv[1], sys.argv[2], sys.argv[3]
body = open(f"{tmp}/status.body", "rb").read().decode("utf-8", "surrogateescape")
lines = open(f"{tmp}/status.headers", "rb").read().decode("latin-1").split("\r\n")
def quote(text, q):
    text = text.replace("\\", "\\\\").replace(q, "\\" + q)
    return q + text.replace("$", "${dollar}") + q
content_type, extra = "application/octet-stream", []
# Headers nginx writes itself, or that describe this one response.
own = {"date", "content-length", "content-type", "connection", "keep-alive",
       "server", "transfer-encoding"}
for line in lines[1:]:
    if ":" not in line:
        continue
    name, value = line.split(":", 1)
    value = value.strip()
    if name.lower() == "content-type":
        content_type = value
    elif name.lower() not in own:
        extra.append(f"            add_header {quote(name, chr(34))} {quote(value, chr(34))} always;")
extra_text = "\n".join(extra)
conf = f"""# Written by Benchmarks/gateway.sh: the peer serving the kernel's status bytes.
daemon off;
worker_processes 2;
pid {tmp}/nginx/nginx.pid;
error_log {tmp}/nginx/logs/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    # No per-connection request cap (default 1000), like the kernel.
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx/client_body;
    proxy_temp_path {tmp}/nginx/proxy;
    fastcgi_temp_path {tmp}/nginx/fastcgi;
    uwsgi_temp_path {tmp}/nginx/uwsgi;
    scgi_temp_path {tmp}/nginx/scgi;
    # A literal "$" inside return text, which has no escape for it.
    geo $dollar {{
        default "$";
    }}
    server {{
        listen 127.0.0.1:{port};
        location = {path} {{
            default_type {quote(content_type, chr(34))};
{extra_text}
            return 200 {quote(body, chr(39))};
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""
open(f"{tmp}/nginx/nginx.conf", "w", encoding="utf-8", errors="surrogateescape").write(conf)
PY
  nginx_cmd=(nginx -e "$TMP/nginx/logs/error.log" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf")
  "${nginx_cmd[@]}" -t -q >"$TMP/nginx/test.log" 2>&1 || {
    cat "$TMP/nginx/test.log" >&2
    die "nginx rejected the generated config $TMP/nginx/nginx.conf"
  }
  "${nginx_cmd[@]}" >"$TMP/nginx/logs/stdout.log" 2>&1 </dev/null &
  nginx_pid=$!
  nginx="http://127.0.0.1:$nginx_port"
  for ((i = 0; i < 100; i++)); do
    curl -sf -o /dev/null --max-time 1 "$nginx$STATUS_PATH" && break
    alive "$nginx_pid" || { cat "$TMP/nginx/logs/error.log" >&2; die "nginx did not start"; }
    sleep 0.1
  done
  curl -sS --max-time 5 -D "$TMP/nginx_status.headers" -o "$TMP/nginx_status.body" "$nginx$STATUS_PATH"
  cmp -s "$TMP/status.body" "$TMP/nginx_status.body" ||
    die "nginx does not serve the same bytes as the kernel (see $TMP/nginx/nginx.conf)"
fi

# --- bare swift-nio with the same bytes -----------------------------------------

nio_pid=""
if [[ ${code[status]} == 200 && -x $BIN/bench-nio-peer ]]; then
  nio_port="$(free_port)"
  while [[ $nio_port == "$kernel_port" || $nio_port == "$nginx_port" ]]; do nio_port="$(free_port)"; done
  "$BIN/bench-nio-peer" --port "$nio_port" --body "$TMP/status.body" --headers "$TMP/status.headers" \
    >"$TMP/nio-peer.log" 2>&1 </dev/null &
  nio_pid=$!
  nio="http://127.0.0.1:$nio_port"
  for ((i = 0; i < 100; i++)); do
    curl -sf -o /dev/null --max-time 1 "$nio$STATUS_PATH" && break
    alive "$nio_pid" || { cat "$TMP/nio-peer.log" >&2; die "bench-nio-peer did not start"; }
    sleep 0.1
  done
  curl -sS --max-time 5 -o "$TMP/nio_status.body" "$nio$STATUS_PATH"
  cmp -s "$TMP/status.body" "$TMP/nio_status.body" || die "bench-nio-peer does not serve the same bytes as the kernel"
elif [[ ${code[status]} == 200 ]]; then
  note "no bench-nio-peer in BIN=$BIN (swift build -c release --product bench-nio-peer): the swift-nio peer is skipped"
fi

# --- load ----------------------------------------------------------------------

# Converts wrk's "1.23ms" / "456.00us" / "1.02s" / "2.00m" to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
    if (f < 0) print "n/a"; else printf "%.2f", n * f
  }'
}

declare -A rps=() p50=() p99=() non2xx=() errors=()

# Runs a load command in the background and waits for it, so that INT or TERM
# reach the trap at once instead of after the run.
run_load() {
  "$@" &
  load_pid=$!
  local rc=0
  wait "$load_pid" || rc=$?
  load_pid=""
  return "$rc"
}

# Runs wrk against one URL with $1 connections; fills rps (2xx responses per
# second), p50, p99 under the key "$2@$1".
measure() {
  local connections=$1 key="$2@$1" url=$3 out="$TMP/wrk-$2-$1.txt" total bad sock reqs
  local wrk_args=(-t"$THREADS" -c"$connections" "${header_args[@]}")
  if ((WARMUP > 0)); then
    run_load timeout $((WARMUP + 30)) wrk "${wrk_args[@]}" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
  fi
  run_load timeout $((DURATION + 60)) wrk "${wrk_args[@]}" -d"${DURATION}s" --latency "$url" >"$out" 2>&1 || {
    cat "$out" >&2
    note "wrk failed against $url"
    return 0
  }
  total="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
  reqs="$(awk '/ requests in / {print $1}' "$out")"
  bad="$(awk '/^  Non-2xx or 3xx responses:/ {print $NF}' "$out")"
  sock="$(awk '/Socket errors:/ {s = 0; for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s}' "$out")"
  non2xx[$key]="${bad:-0}"
  errors[$key]="${sock:-0}"
  # Throughput counts good answers only: a 429 or 500 is not served work.
  rps[$key]="$(awk -v t="${total:-0}" -v r="${reqs:-0}" -v b="${bad:-0}" \
    'BEGIN { if (r > 0) printf "%.1f", t * (r - b) / r; else print "0" }')"
  p50[$key]="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
  p99[$key]="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
  if ((${non2xx[$key]} > 0)); then note "warning: $url gave ${non2xx[$key]} non-2xx answers under load"; fi
}

targets=(nginx_status nio_status kernel_status kernel_echo plugin_echo)
declare -A label=(
  [nginx_status]="nginx    GET $STATUS_PATH"
  [nio_status]="swiftnio GET $STATUS_PATH"
  [kernel_status]="kernel   GET $STATUS_PATH"
  [kernel_echo]="kernel   GET $KERNEL_ECHO_PATH"
  [plugin_echo]="C plugin GET $PLUGIN_ECHO_PATH"
)
declare -A url=(
  [kernel_status]="$kernel$STATUS_PATH"
  [kernel_echo]="$kernel$KERNEL_ECHO_PATH"
  [plugin_echo]="$kernel$PLUGIN_ECHO_PATH"
)
declare -A answer=([kernel_status]="${code[status]}" [kernel_echo]="${code[kernel_echo]}" [plugin_echo]="${code[plugin_echo]}")
if [[ -n $nginx_pid ]]; then
  url[nginx_status]="$nginx$STATUS_PATH"
  answer[nginx_status]=200
else
  answer[nginx_status]="n/a (the kernel's status route gave ${code[status]})"
fi
if [[ -n $nio_pid ]]; then
  url[nio_status]="$nio$STATUS_PATH"
  answer[nio_status]=200
else
  answer[nio_status]="n/a (no bench-nio-peer, or the kernel's status route gave ${code[status]})"
fi

unmeasured=0
# shellcheck disable=SC2086 # CONNECTIONS is a list of sizes
for connections in $CONNECTIONS; do
  for key in "${targets[@]}"; do
    if [[ ${answer[$key]} != 200 ]]; then
      note "skipping ${label[$key]}: answered ${answer[$key]}"
      unmeasured=1
      continue
    fi
    note "measuring ${label[$key]} (${DURATION} s, $connections connections)"
    measure "$connections" "$key" "${url[$key]}"
    [[ -n ${rps[$key@$connections]:-} ]] || unmeasured=1
  done
done

# --- report --------------------------------------------------------------------

ratio() {
  if [[ -n ${1:-} && -n ${2:-} ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
  else
    echo n/a
  fi
}
whole() { if [[ -n ${1:-} ]]; then printf '%.0f' "$1"; else echo n/a; fi; }
# "12345 req/s (p99 1.20 ms)" for a key.
figure() { echo "$(whole "${rps[$1]:-}") req/s (p99 ${p99[$1]:-n/a} ms)"; }

echo
echo "gateway benchmark: wrk -t$THREADS -d${DURATION}s at $CONNECTIONS connections, loopback, $(nproc) cores"
echo "status body: $(wc -c <"$TMP/status.body" 2>/dev/null || echo 0) bytes"
# shellcheck disable=SC2086
for connections in $CONNECTIONS; do
  echo
  printf '%-38s %5s %12s %9s %9s %8s %7s\n' target conns "req/s" "p50 ms" "p99 ms" non-2xx errors
  for key in "${targets[@]}"; do
    k="$key@$connections"
    printf '%-38s %5s %12s %9s %9s %8s %7s\n' "${label[$key]}" "$connections" "${rps[$k]:-n/a}" \
      "${p50[$k]:-n/a}" "${p99[$k]:-n/a}" "${non2xx[$k]:--}" "${errors[$k]:--}"
  done
done
echo

# shellcheck disable=SC2086
for connections in $CONNECTIONS; do
  c=$connections
  echo "gateway status vs nginx, $c connections: ours $(figure "kernel_status@$c"), peer nginx $(figure "nginx_status@$c"), ratio $(ratio "${rps[kernel_status@$c]:-}" "${rps[nginx_status@$c]:-}")"
  echo "gateway status vs swift-nio, $c connections: ours $(figure "kernel_status@$c"), peer swift-nio $(figure "nio_status@$c"), ratio $(ratio "${rps[kernel_status@$c]:-}" "${rps[nio_status@$c]:-}")"
  echo "plugin dispatch, $c connections: ours $(figure "plugin_echo@$c") (C plugin echo), peer $(figure "kernel_echo@$c") (kernel echo), ratio $(ratio "${rps[plugin_echo@$c]:-}" "${rps[kernel_echo@$c]:-}")"
done

exit "$unmeasured"
