#!/usr/bin/env bash
# What a dead kernel worker costs: `kill -9` of the worker under wrk load.
#
#   Benchmarks/worker-restart.sh [SECONDS]        (default 20; the kill comes at half time)
#
# Starts `meltybase serve` ($BIN, default .build/release/meltybase) on a temporary data
# directory with the C example plugin in portal `demo`, drives wrk at /v1/system/status
# and at the plugin route GET /p/demo/echo-c/echo, and a polling client that sends one
# request every 10 ms. Halfway, the worker process (the supervisor's child started with
# --worker) is killed with SIGKILL. Prints, per wrk run, the requests completed and the
# non-2xx responses and socket errors, and from the poller the gap: the time from the
# kill until the next successful request, and how many polls failed in between.
#
# Needs wrk and python3. Build first: `swift build -c release` (the C plugin is built
# next to the binary by scripts/build-c-plugins.sh).
set -euo pipefail

duration="${1:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../scripts/env.sh
. "$root/scripts/env.sh"
bin="${BIN:-$root/.build/release/meltybase}"
[[ -x "$bin" ]] || { echo "error: $bin not found: run swift build -c release, or set BIN" >&2; exit 1; }
command -v wrk >/dev/null || { echo "error: wrk not found (apt-get install wrk)" >&2; exit 1; }
bash "$root/scripts/build-c-plugins.sh" "$(dirname "$bin")" >/dev/null

work="$(mktemp -d /tmp/meltybase-restart-XXXXXX)"
chmod 755 "$work"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/plugins.toml" <<EOF
[kernel]
data_dir = "$work/data"
log_level = "notice"

[[listeners]]
host = "127.0.0.1"
port = $port

[rate_limit]
per_client = { rate = 10000000, burst = 10000000 }
per_portal = { rate = 10000000, burst = 10000000 }

[plugins.echo-c]
path = "libecho_c.so"
required = true

[portals.demo]
plugins = ["echo-c"]
EOF

supervisor=""
cleanup() {
    if [[ -n "$supervisor" ]] && kill -0 "$supervisor" 2>/dev/null; then
        kill -TERM "$supervisor"
        wait "$supervisor" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

url="http://127.0.0.1:$port"
"$bin" serve --config "$work/plugins.toml" >"$work/serve.log" 2>&1 &
supervisor=$!
for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$url/v1/system/status" 2>/dev/null && break
    sleep 0.2
done
curl -fsS -o /dev/null "$url/v1/system/status" || { echo "error: the kernel did not start; log:" >&2; cat "$work/serve.log" >&2; exit 1; }

worker_of() {
    local child
    for child in $(pgrep -P "$1"); do
        if tr '\0' ' ' </proc/"$child"/cmdline | grep -q -- '--worker'; then echo "$child"; return; fi
    done
}

# The poller: a request on a new connection every 10 ms (5 s timeout); prints each one's
# start and end time and whether it succeeded. While no worker runs, new connections wait
# in the listening socket's backlog, so a request may succeed late rather than fail.
python3 - "$url/v1/system/status" "$duration" >"$work/polls" <<'EOF' &
import sys, time, urllib.request
url, duration = sys.argv[1], float(sys.argv[2])
end = time.time() + duration
while time.time() < end:
    started = time.time()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            ok = 200 <= response.status < 300
    except Exception:
        ok = False
    print(f"{started:.6f} {time.time():.6f} {'ok' if ok else 'fail'}", flush=True)
    time.sleep(max(0.0, 0.01 - (time.time() - started)))
EOF
poller=$!

wrk -t1 -c16 -d"${duration}s" "$url/v1/system/status" >"$work/wrk-status.txt" 2>&1 &
wrk_status=$!
wrk -t1 -c16 -d"${duration}s" "$url/p/demo/echo-c/echo" >"$work/wrk-plugin.txt" 2>&1 &
wrk_plugin=$!

sleep "$(python3 -c "print($duration / 2)")"
worker="$(worker_of "$supervisor")"
[[ -n "$worker" ]] || { echo "error: no worker process under supervisor $supervisor" >&2; exit 1; }
killed_at="$(date +%s.%N)"
kill -KILL "$worker"
wait "$wrk_status" "$wrk_plugin" "$poller"

summary() {
    local name="$1" file="$2"
    local total non2xx errors
    total="$(awk '/requests in/ {print $1}' "$file")"
    non2xx="$(awk -F': ' '/Non-2xx/ {print $2}' "$file")"
    errors="$(awk -F': ' '/Socket errors/ {print $2}' "$file")"
    printf '%-28s requests %-8s non-2xx %-6s socket errors: %s\n' "$name" "${total:-?}" "${non2xx:-0}" "${errors:-none}"
}
echo "worker-restart: ${duration} s of load, worker pid $worker killed with SIGKILL at half time ($bin)"
summary "GET /v1/system/status" "$work/wrk-status.txt"
summary "GET /p/demo/echo-c/echo" "$work/wrk-plugin.txt"
python3 - "$killed_at" "$work/polls" <<'EOF'
import sys
killed = float(sys.argv[1])
polls = [(float(a), float(b), state) for a, b, state in (line.split() for line in open(sys.argv[2]) if line.strip())]
# Requests that started after the kill; the gap ends when the first of them succeeds.
after = [(a, b, s) for a, b, s in polls if a >= killed]
first_ok = min((b for a, b, s in after if s == "ok"), default=None)
failed = sum(1 for a, b, s in after if s == "fail" and (first_ok is None or a < first_ok))
failed_total = sum(1 for *_, s in polls if s == "fail")
slowest = max((b - a for a, b, s in polls), default=0)
gap = "no success after the kill" if first_ok is None else f"{(first_ok - killed) * 1000:.0f} ms"
print(f"poller (10 ms, new connection each): polls {len(polls)}, failed {failed_total} "
      f"({failed} started after the kill and before the first success), slowest {slowest * 1000:.0f} ms")
print(f"gap: kill -9 to the first successful response to a request sent after it: {gap}")
EOF
grep -h "kernel worker" "$work/serve.log" | sed 's/^/log: /' | head -5
