#!/usr/bin/env bash
# Edge benchmark (shared design: performance.md). In one run, on the same handler:
#
#   warm   wrk against POST /p/bench/functions/v1/hello through the gateway (a release
#          kernel, the Edge plugin, its warm Deno worker) vs wrk against the same handler
#          served by bare `deno run` of Deno.serve on a loopback port: req/s and p50/p99
#          for each, the same connections and duration
#   proxy  (when haproxy is installed) the same wrk against HAProxy in front of the same
#          bare deno: what one proxy hop written in C costs on this machine, for scale
#   cold   time from "deploy answered" to the first response of a new function (the
#          deploy pre-warms a worker) vs `deno run` of the same file to its first HTTP
#          response (process start, module load, listen, answer), median of COLD_RUNS
#
# Prints a table, then one line per figure: `name: ours X, peer Y, ratio R`, and the CPU
# time per request of the kernel's worker and of the function's Deno workers (from /proc).
# A benchmark, not a test: it asserts no timing.
#
# usage: Benchmarks/edge.sh
# env:   BIN=<dir>            release build folder holding meltybase and libEdgePlugin.so
#                             (default: build them)
#        DENO=<path>          deno (default: .venv/bin/deno)
#        CONNECTIONS="1 16 64"  wrk connection counts (one warm row each)
#        DURATION=10 WARMUP=3 THREADS=2
#        COLD_RUNS=7
#        KEEP_TMP=1           keep the temp folder (server log)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME=edge
CONNECTIONS="${CONNECTIONS:-1 16 64}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-2}"
COLD_RUNS="${COLD_RUNS:-7}"
DENO="${DENO:-$ROOT/.venv/bin/deno}"

# shellcheck source=Benchmarks/kernel-lib.sh
source "$ROOT/Benchmarks/kernel-lib.sh"

for tool in wrk curl python3 setsid; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs it)"
done
[[ -x $DENO ]] || die "no deno at $DENO (scripts/setup.sh installs it into .venv)"

if [[ -z ${BIN:-} ]]; then
  note "building meltybase and the Edge plugin (release)"
  (cd "$ROOT" && swift build -c release --product meltybase && swift build -c release --product EdgePlugin) >&2
  BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)"
fi
BIN="$(cd "$BIN" 2>/dev/null && pwd)" || die "no folder BIN=$BIN (build first: swift build -c release)"
[[ -x $BIN/meltybase && -f $BIN/libEdgePlugin.so ]] || die "no meltybase or libEdgePlugin.so in BIN=$BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/meltybase-edge.XXXXXX")"
chmod 755 "$TMP"
peer_pid=""
proxy_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $peer_pid ]] && stop_process "$peer_pid" 5
  [[ -n $proxy_pid ]] && stop_process "$proxy_pid" 5
  kernel_cleanup
  if [[ -n ${KEEP_TMP:-} ]]; then note "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

# The handler both sides serve: read the JSON body, answer a small JSON object. The
# function is `Deno.serve(handler)`; the peer is the same text with the options bare Deno
# needs to listen on a port (`Deno.serve(options, handler)`). The run number marks the
# cold runs' copies, so no cache serves one run from another's.
mkdir -p "$TMP/hello"
handler() {
  printf 'async (req) => {\n  const body = await req.text();\n'
  printf '  return new Response(JSON.stringify({ hello: body.length, run: %s }), { headers: { "content-type": "application/json" } });\n}' "${1:-0}"
}
function_source() { printf 'Deno.serve(%s);\n' "$(handler "${1:-0}")"; }
peer_source() { printf 'Deno.serve({ hostname: "127.0.0.1", port: Number(Deno.env.get("PORT")), onListen() {} }, %s);\n' "$(handler "${1:-0}")"; }
function_source >"$TMP/hello/index.ts"
printf '{"name": "bench"}' >"$TMP/body.json"
cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"name": "bench"}'
wrk.headers["content-type"] = "application/json"
EOF

port="$(free_port)"
kernel_start "$port" "
[plugins.edge]
path = \"libEdgePlugin.so\"

[plugins.edge.config]
deno_path = \"$DENO\"
"
portal_create bench edge

deploy() {  # deploy NAME FILE: through the admin API; prints nothing, dies on refusal
  local body status
  body="$(python3 -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "files": {"index.ts": open(sys.argv[2]).read()}}))' "$1" "$2")"
  status="$(curl -s -o "$TMP/deploy.out" -w '%{http_code}' --max-time 120 -X POST "$kernel/p/bench/edge/v1/functions" \
    -H "Authorization: Bearer $service" -H 'Content-Type: application/json' --data-binary "$body")" || status=000
  [[ $status == 201 ]] || { cat "$TMP/deploy.out" >&2; die "deploy of $1 answered $status"; }
}
deploy hello "$TMP/hello/index.ts"

# CPU time (microseconds) the given processes used so far (all their threads).
cpu_us() {
  local pid total=0 ticks
  ticks=$(getconf CLK_TCK)
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
  done
  echo $((total * 1000000 / ticks))
}
deno_worker_pids() { pgrep -f -- "runner.js $TMP/" || true; }

# wrk_run URL CONNECTIONS [header]: sets rps, p50, p99 (ms), and kernel_cpu / deno_cpu, the
# microseconds of CPU the kernel's worker and the function's Deno workers used per request
# during the measured run.
wrk_run() {
  local url=$1 connections=$2 header=${3:-} out threads=$THREADS kernel_before deno_before requests
  local -a extra=() denos
  ((threads > connections)) && threads=$connections
  [[ -n $header ]] && extra=(-H "$header")
  wrk -t"$threads" -c"$connections" -d"${WARMUP}s" -s "$TMP/post.lua" "${extra[@]}" "$url" >/dev/null 2>&1 || true
  mapfile -t denos < <(deno_worker_pids)
  kernel_before=$(cpu_us "$(kernel_worker_pid)") deno_before=$(cpu_us "${denos[@]}")
  out="$(wrk -t"$threads" -c"$connections" -d"${DURATION}s" --latency -s "$TMP/post.lua" "${extra[@]}" "$url" 2>&1)" || die "wrk failed: $out"
  requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  kernel_cpu=$(( ($(cpu_us "$(kernel_worker_pid)") - kernel_before) / (requests > 0 ? requests : 1) ))
  deno_cpu=$(( ($(cpu_us "${denos[@]}") - deno_before) / (requests > 0 ? requests : 1) ))
  if grep -q 'Non-2xx' <<<"$out"; then echo "$out" >&2; die "wrk saw non-2xx answers from $url"; fi
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p50="$(awk '$1 == "50%" {print $2}' <<<"$out" | to_ms)"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)"
}
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f", v }'; }

# The peer: the same file under bare deno, listening on a loopback port.
peer_port="$(free_port)"
start_peer() {  # start_peer FILE PORT: sets peer_pid; waits for the first answer
  DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 PORT=$2 setsid "$DENO" run --no-prompt --no-config --allow-net=127.0.0.1:"$2" --allow-env=PORT "$1" \
    >"$TMP/peer.log" 2>&1 </dev/null &
  peer_pid=$!
}
peer_source >"$TMP/hello/serve.ts"
start_peer "$TMP/hello/serve.ts" "$peer_port"
for _ in $(seq 1 100); do curl -sf -o /dev/null -X POST --data-binary @"$TMP/body.json" "http://127.0.0.1:$peer_port/" && break; sleep 0.1; done

# For scale: HAProxy (C, one thread) in front of the same bare deno, keep-alive both sides.
proxy_port=""
if command -v haproxy >/dev/null; then
  proxy_port="$(free_port)"
  printf '%s\n' global '  nbthread 1' defaults '  mode http' '  timeout connect 5s' '  timeout client 60s' \
    '  timeout server 60s' '  option http-keep-alive' frontend\ bench "  bind 127.0.0.1:$proxy_port" \
    '  default_backend deno' backend\ deno "  server deno 127.0.0.1:$peer_port" >"$TMP/haproxy.cfg"
  haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 </dev/null &
  proxy_pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null -X POST --data-binary @"$TMP/body.json" "http://127.0.0.1:$proxy_port/" && break; sleep 0.1; done
fi

printf '\n%-28s %12s %10s %10s\n' "warm (req/s, p50, p99 ms)" "req/s" "p50" "p99" >&2
declare -A ours_rps ours_p50 peer_rps peer_p50 proxy_rps ours_cpu
for c in $CONNECTIONS; do
  wrk_run "$kernel/p/bench/functions/v1/hello" "$c" "Authorization: Bearer $anon"
  ours_rps[$c]=$rps ours_p50[$c]=$p50 ours_cpu[$c]="kernel $kernel_cpu us, deno $deno_cpu us"
  printf '%-28s %12s %10s %10s\n' "gateway, $c conns" "$(whole "$rps")" "$p50" "$p99" >&2
  wrk_run "http://127.0.0.1:$peer_port/" "$c"
  peer_rps[$c]=$rps peer_p50[$c]=$p50
  printf '%-28s %12s %10s %10s\n' "bare deno serve, $c conns" "$(whole "$rps")" "$p50" "$p99" >&2
  if [[ -n $proxy_port ]]; then
    wrk_run "http://127.0.0.1:$proxy_port/" "$c"
    proxy_rps[$c]=$rps
    printf '%-28s %12s %10s %10s\n' "haproxy -> deno, $c conns" "$(whole "$rps")" "$p50" "$p99" >&2
  fi
done
[[ -n $proxy_pid ]] && stop_process "$proxy_pid" 5
proxy_pid=""
stop_process "$peer_pid" 5
peer_pid=""

# Cold: a new function's first response after its deploy vs deno run to its first response.
now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
: >"$TMP/cold-ours" && : >"$TMP/cold-peer"
for i in $(seq 1 "$COLD_RUNS"); do
  function_source "$i" >"$TMP/cold.ts"
  deploy "cold$i" "$TMP/cold.ts"
  start=$(now_ms)
  curl -sf -o /dev/null -X POST -H "Authorization: Bearer $anon" --data-binary @"$TMP/body.json" "$kernel/p/bench/functions/v1/cold$i" || die "cold$i did not answer"
  echo $(($(now_ms) - start)) >>"$TMP/cold-ours"

  peer_source "$i" >"$TMP/hello/serve.ts"
  cold_port="$(free_port)"
  start=$(now_ms)
  start_peer "$TMP/hello/serve.ts" "$cold_port"
  until curl -sf -o /dev/null -X POST --data-binary @"$TMP/body.json" "http://127.0.0.1:$cold_port/" 2>/dev/null; do
    alive "$peer_pid" || die "deno run exited: $(cat "$TMP/peer.log")"
    sleep 0.002
  done
  echo $(($(now_ms) - start)) >>"$TMP/cold-peer"
  stop_process "$peer_pid" 5
  peer_pid=""
done
cold_ours="$(median <"$TMP/cold-ours")"
cold_peer="$(median <"$TMP/cold-peer")"
printf '\n%-28s %12s\n' "cold (ms to first response)" "median" >&2
printf '%-28s %12s   (%s)\n' "after deploy, via gateway" "$cold_ours" "$(tr '\n' ' ' <"$TMP/cold-ours")" >&2
printf '%-28s %12s   (%s)\n' "deno run to first answer" "$cold_peer" "$(tr '\n' ' ' <"$TMP/cold-peer")" >&2

echo
for c in $CONNECTIONS; do
  echo "edge warm req/s ($c connections): ours $(whole "${ours_rps[$c]}"), peer $(whole "${peer_rps[$c]}"), ratio $(ratio "${ours_rps[$c]}" "${peer_rps[$c]}")"
  echo "edge warm p50 ms ($c connections): ours ${ours_p50[$c]}, peer ${peer_p50[$c]}, added $(awk -v a="${ours_p50[$c]}" -v b="${peer_p50[$c]}" 'BEGIN { printf "%.2f", a - b }')"
  echo "edge warm CPU per request ($c connections): ${ours_cpu[$c]}"
  if [[ -n $proxy_port ]]; then
    echo "edge warm req/s via haproxy ($c connections): haproxy $(whole "${proxy_rps[$c]}"), peer $(whole "${peer_rps[$c]}"), ratio $(ratio "${proxy_rps[$c]}" "${peer_rps[$c]}"); ours/haproxy $(ratio "${ours_rps[$c]}" "${proxy_rps[$c]}")"
  fi
done
echo "edge cold first response ms: ours $cold_ours, peer $cold_peer, ratio $(ratio "$cold_ours" "$cold_peer")"
