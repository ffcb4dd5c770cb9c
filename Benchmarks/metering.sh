#!/usr/bin/env bash
# The metering's cost on the hot path (issue 16): the gateway benchmark's plugin dispatch
# (GET /p/demo/echo-c/echo, the C example plugin) against two kernels started from the
# same config, one with `[metering] enabled = true` (flushing every FLUSH seconds, so
# flushes happen during the measured runs) and one with `enabled = false`, measured in
# the same run in alternating rounds (on, off, on, off, ...) with the same wrk settings.
# Prints each round and `metering: on X req/s, off Y req/s, ratio R` (goal: R >= 0.98).
# A benchmark, not a test: it asserts no timing; it exits non-zero only when something
# could not be measured.
#
# usage: Benchmarks/metering.sh
# env:   BIN=<dir>         release build folder with meltybase and libecho_c.so (default:
#                          build them)
#        DURATION=10       seconds of each measured wrk run
#        WARMUP=3          seconds of an unmeasured run before each
#        ROUNDS=3          measured rounds per kernel
#        CONNECTIONS=64    wrk's -c
#        THREADS=2         wrk's -t
#        FLUSH=5           the metered kernel's flush_interval_seconds
#        KEEP_TMP=1        keep the temp folder (logs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
FLUSH="${FLUSH:-5}"
PATH_UNDER_TEST=/p/demo/echo-c/echo

NAME=metering
# die, note, alive, stop_process (shared with rest.sh and gateway.sh).
# shellcheck source=kernel-lib.sh
source "$ROOT/Benchmarks/kernel-lib.sh"
for n in "$DURATION" "$WARMUP" "$ROUNDS" "$CONNECTIONS" "$THREADS" "$FLUSH"; do
  [[ $n =~ ^[0-9]+$ ]] || die "DURATION, WARMUP, ROUNDS, CONNECTIONS, THREADS and FLUSH take whole numbers (got '$n')"
done
((DURATION > 0 && ROUNDS > 0 && FLUSH > 0)) || die "DURATION, ROUNDS and FLUSH must be at least 1"

# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
for tool in wrk curl python3 setsid timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs it)"
done
if [[ -z ${BIN:-} ]]; then
  note "building meltybase (release)"
  (cd "$ROOT" && swift build -c release --product meltybase) >&2
  BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)"
fi
[[ -x $BIN/meltybase ]] || die "no meltybase in BIN=$BIN"
bash "$ROOT/scripts/build-c-plugins.sh" "$BIN" >&2
[[ -f $BIN/libecho_c.so ]] || die "no libecho_c.so in BIN=$BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/meltybase-metering.XXXXXX")"
chmod 755 "$TMP"
declare -A pid=() url=()
load_pid=""

# shellcheck disable=SC2317 # reached through the traps
cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  if [[ -n $load_pid ]]; then stop_process "$load_pid" 2; fi
  for name in "${!pid[@]}"; do
    stop_process "${pid[$name]}" 20
    if kill -TERM -- "-${pid[$name]}" 2>/dev/null; then
      sleep 2
      kill -KILL -- "-${pid[$name]}" 2>/dev/null || true
    fi
  done
  if [[ -n ${KEEP_TMP:-} ]]; then note "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts kernel $1 ("on" or "off") with metering $2 (true/false).
start_kernel() {
  local name=$1 enabled=$2 port deadline
  port="$(free_port)"
  mkdir -p "$TMP/$name/data"
  cat >"$TMP/$name/plugins.toml" <<TOML
[plugins.echo-c]
path = "$BIN/libecho_c.so"

[portals.demo]
plugins = ["echo-c"]

[metering]
enabled = $enabled
flush_interval_seconds = $FLUSH
TOML
  (cd "$ROOT" && exec setsid "$BIN/meltybase" serve --config "$TMP/$name/plugins.toml" \
    --data-dir "$TMP/$name/data" --port "$port") >"$TMP/$name/server.log" 2>&1 </dev/null &
  pid[$name]=$!
  url[$name]="http://127.0.0.1:$port$PATH_UNDER_TEST"
  deadline=$((SECONDS + 120))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${url[$name]}")" == 200 ]]; do
    alive "${pid[$name]}" || { tail -n 30 "$TMP/$name/server.log" >&2; die "kernel '$name' exited (log above)"; }
    ((SECONDS < deadline)) || { tail -n 30 "$TMP/$name/server.log" >&2; die "kernel '$name' did not serve $PATH_UNDER_TEST"; }
    sleep 0.2
  done
  note "kernel metering=$enabled serves ${url[$name]}"
}

run_load() {
  "$@" &
  load_pid=$!
  local rc=0
  wait "$load_pid" || rc=$?
  load_pid=""
  return "$rc"
}

# Prints 2xx responses per second of one measured run against kernel $1.
measure() {
  local name=$1 round=$2 out="$TMP/wrk-$1-$2.txt" total reqs bad
  if ((WARMUP > 0)); then
    run_load timeout $((WARMUP + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "${url[$name]}" >/dev/null 2>&1 || true
  fi
  run_load timeout $((DURATION + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${url[$name]}" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk failed against ${url[$name]}"; }
  total="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
  reqs="$(awk '/ requests in / {print $1}' "$out")"
  bad="$(awk '/^  Non-2xx or 3xx responses:/ {print $NF}' "$out")"
  ((${bad:-0} == 0)) || note "warning: ${url[$name]} gave $bad non-2xx answers"
  awk -v t="${total:-0}" -v r="${reqs:-0}" -v b="${bad:-0}" 'BEGIN { if (r > 0) printf "%.1f\n", t * (r - b) / r; else print "0" }'
}

start_kernel on true
start_kernel off false
declare -a on=() off=()
for ((round = 1; round <= ROUNDS; round++)); do
  on+=("$(measure on "$round")")
  off+=("$(measure off "$round")")
  printf 'round %d: metering on %s req/s, off %s req/s\n' "$round" "${on[-1]}" "${off[-1]}"
done
# The metered kernel really counted: its /metrics shows the portal's requests.
metrics_url="${url[on]%$PATH_UNDER_TEST}/metrics"
sleep $((FLUSH + 1))
counted="$(curl -s --max-time 5 "$metrics_url" | awk -F'} ' '/^meltybase_usage_requests_total\{portal="demo",plugin="echo-c",class="2xx"\}/ {print $2}')"
note "the metered kernel counted ${counted:-nothing} requests of portal demo"
python3 - "${on[*]}" "${off[*]}" "$CONNECTIONS" "$DURATION" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
mean_on, mean_off = statistics.mean(on), statistics.mean(off)
ratio = mean_on / mean_off if mean_off else float("nan")
print(f"metering: on {mean_on:.0f} req/s, off {mean_off:.0f} req/s, ratio {ratio:.3f} "
      f"(GET /p/demo/echo-c/echo, {len(on)} rounds of {sys.argv[4]} s each, {sys.argv[3]} connections; "
      f"median on {statistics.median(on):.0f}, off {statistics.median(off):.0f})")
PY
