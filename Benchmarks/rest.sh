#!/usr/bin/env bash
# REST benchmark of the Database plugin (shared design: performance.md).
#
# One kernel, one portal, a table items(id int primary key, owner uuid, name text)
# with row-level security on (a permissive anon select policy and insert policy) and
# 10,000 rows. In the same run, with the same number of clients:
#   rest get   wrk  GET /p/bench/rest/v1/items?id=eq.<random id>      (anon key)
#        vs    pgbench running the transaction the plugin sends for that request:
#              BEGIN READ ONLY; set_config('role', 'anon'), set_config('request.jwt.claims', ...);
#              the select (the plugin's own SQL text); COMMIT — in one pipeline
#              (\startpipeline ... \endpipeline), as the plugin sends it: one round trip
#   rest post  wrk  POST one row, Prefer: return=minimal, unique ids    (anon key)
#        vs    pgbench running the plugin's insert transaction
# against the same Postgres database (the embedded cluster's unix socket, the portal's
# database, login role `authenticator` as the plugin's pool). pgbench runs with
# -M prepared, like the plugin's prepared statements.
# Prints a table, then one line per figure and size:
#   rest get, 16 clients: ours X req/s, peer Y tps, ratio R
# A benchmark, not a test: it asserts no timing. It exits non-zero only when something
# could not be measured.
#
# usage: Benchmarks/rest.sh
# env:   BIN=<dir>          folder holding meltybase and libDatabasePlugin.so
#                           (default: <repo>/.build/release; build it first:
#                           swift build -c release)
#        CLIENTS="16 64"    connection counts (wrk -c, pgbench -c)
#        DURATION=10        seconds of each measured run
#        WARMUP=2           seconds of an unmeasured wrk run before each (0: none)
#        THREADS=2          wrk -t and pgbench -j
#        ROWS=10000         rows in items
#        SKIP_SETUP=1       do not run scripts/setup.sh --bench first
#        KEEP_TMP=1         keep the temp folder (kernel log, scripts, outputs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

BIN="${BIN:-$ROOT/.build/release}"
CLIENTS="${CLIENTS:-16 64}"
DURATION="${DURATION:-10}"
DURATION="${DURATION%s}"
WARMUP="${WARMUP:-2}"
WARMUP="${WARMUP%s}"
THREADS="${THREADS:-2}"
ROWS="${ROWS:-10000}"
STARTUP_TIMEOUT=120
PORTAL=bench

die() { printf 'rest: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'rest: %s\n' "$*" >&2; }

for n in $CLIENTS "$DURATION" "$WARMUP" "$THREADS" "$ROWS"; do
  [[ $n =~ ^[0-9]+$ ]] || die "CLIENTS, DURATION, WARMUP, THREADS and ROWS take whole numbers (got '$n')"
done
((DURATION > 0)) || die "DURATION must be at least 1 second"
((ROWS > 0)) || die "ROWS must be at least 1"

if [[ -z ${SKIP_SETUP:-} ]]; then
  bash "$ROOT/scripts/setup.sh" --bench >&2
fi
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
for tool in wrk pgbench curl python3 setsid timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs it)"
done
BIN="$(cd "$BIN" 2>/dev/null && pwd)" || die "no folder BIN=$BIN (build first: swift build -c release)"
[[ -x $BIN/meltybase ]] || die "no meltybase in BIN=$BIN (build first: swift build -c release)"
[[ -f $BIN/libDatabasePlugin.so ]] || die "no libDatabasePlugin.so in BIN=$BIN (swift build -c release builds it)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/meltybase-rest.XXXXXX")"
# Readable by others: the embedded Postgres may run as another user.
chmod 755 "$TMP"
server_pid=""
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
  if [[ -n $server_pid ]]; then
    # The kernel stops its embedded Postgres and Redis on TERM; anything left in its
    # process group (it was started as a group leader) goes after it.
    stop_process "$server_pid" 30
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

# --- the kernel and the portal -------------------------------------------------------

port="$(free_port)"
mkdir -p "$TMP/data"
chmod 755 "$TMP/data"
cat >"$TMP/meltybase.toml" <<EOF
# Written by Benchmarks/rest.sh. Plugin paths resolve against the executable's folder.
[[listeners]]
host = "127.0.0.1"
port = $port

[plugins.database]
path = "libDatabasePlugin.so"

# Measure the load, do not throttle it.
[rate_limit]
per_client = { rate = 10000000, burst = 100000000 }
per_portal = { rate = 10000000, burst = 100000000 }
EOF

meltybase() { "$BIN/meltybase" "$@" --config "$TMP/meltybase.toml" --data-dir "$TMP/data"; }

note "starting meltybase on 127.0.0.1:$port (log: $TMP/server.log)"
# setsid: a process group of its own, so cleanup can reach its children too.
(cd "$TMP" && exec setsid "$BIN/meltybase" serve --config "$TMP/meltybase.toml" \
  --data-dir "$TMP/data" --port "$port") >"$TMP/server.log" 2>&1 </dev/null &
server_pid=$!

kernel="http://127.0.0.1:$port"
started=$SECONDS
until grep -q "MeltyBase is listening" "$TMP/server.log" 2>/dev/null &&
  curl -sf -o /dev/null --max-time 2 "$kernel/v1/system/status"; do
  if ! alive "$server_pid"; then
    tail -n 30 "$TMP/server.log" >&2 || true
    die "meltybase exited before listening (log above)"
  fi
  if ((SECONDS - started >= STARTUP_TIMEOUT)); then
    tail -n 30 "$TMP/server.log" >&2 || true
    die "meltybase did not listen within $STARTUP_TIMEOUT s (log above)"
  fi
  sleep 0.2
done
note "meltybase listens after $((SECONDS - started)) s"

meltybase portal create "$PORTAL" --plugins database >"$TMP/portal.txt" 2>&1 ||
  { cat "$TMP/portal.txt" >&2; die "meltybase portal create $PORTAL failed"; }
anon="$(awk '$1 == "anon:" {print $NF}' "$TMP/portal.txt")"
service="$(awk '$1 == "service_role:" {print $NF}' "$TMP/portal.txt")"
[[ -n $anon && -n $service ]] || { cat "$TMP/portal.txt" >&2; die "no keys in the output of portal create"; }

base="$kernel/p/$PORTAL"
rest="$base/rest/v1"

# The running kernel picks the portal up within about a second.
for ((i = 0; i < 150; i++)); do
  code="$(curl -s -o "$TMP/probe.body" -w '%{http_code}' --max-time 5 \
    -H "apikey: $service" -H "Authorization: Bearer $service" "$rest/")" || code=000
  if [[ $code == 200 ]]; then break; fi
  sleep 0.2
done
[[ $code == 200 ]] || { cat "$TMP/probe.body" >&2; die "the portal's REST root answered $code"; }

sql() {
  local body status
  body="$(python3 -c 'import json, sys; print(json.dumps({"query": sys.stdin.read()}))')"
  status="$(curl -s -o "$TMP/sql.out" -w '%{http_code}' --max-time 120 -X POST "$base/sql/v1/query" \
    -H "apikey: $service" -H "Authorization: Bearer $service" -H 'Content-Type: application/json' \
    --data-binary "$body")" || status=000
  [[ $status == 200 ]] || { cat "$TMP/sql.out" >&2; die "SQL console answered $status"; }
}

note "creating items with $ROWS rows (RLS on)"
sql <<EOF
create table items (id int primary key, owner uuid, name text);
alter table items enable row level security;
create policy anon_read on items for select to anon using (true);
create policy anon_write on items for insert to anon with check (true);
insert into items select g, gen_random_uuid(), 'item ' || g from generate_series(1, $ROWS) g;
analyze items;
EOF

auth=(-H "apikey: $anon" -H "Authorization: Bearer $anon")
for ((i = 0; i < 100; i++)); do
  code="$(curl -s -o "$TMP/get.body" -w '%{http_code}' --max-time 5 "${auth[@]}" "$rest/items?id=eq.1")" || code=000
  if [[ $code == 200 ]]; then break; fi
  sleep 0.2
done
[[ $code == 200 && $(cat "$TMP/get.body") == *'"id":1'* ]] ||
  { cat "$TMP/get.body" >&2; die "GET items?id=eq.1 answered $code"; }
code="$(curl -s -o "$TMP/post.body" -w '%{http_code}' --max-time 5 "${auth[@]}" -X POST \
  -H 'Content-Type: application/json' -H 'Prefer: return=minimal' \
  --data '{"id":-1,"name":"probe"}' "$rest/items")" || code=000
[[ $code == 201 ]] || { cat "$TMP/post.body" >&2; die "POST items answered $code"; }

# --- the SQL the plugin sends (Plugins/Database/REST/RestHandler.swift) ----------------

# The claims the plugin sets for the anon key are the key's verified JWT payload.
claims="$(python3 -c '
import base64, json, sys
part = sys.argv[1].split(".")[1]
print(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode())' "$anon")"
socket_dir="$TMP/data/postgres-socket"
if [[ ! -S $socket_dir/.s.PGSQL.5432 ]]; then
  socket_dir="$(grep -o 'socket=[^ ]*' "$TMP/server.log" | head -n 1 | cut -d= -f2 | tr -d '"')"
fi
[[ -S $socket_dir/.s.PGSQL.5432 ]] || die "cannot find the embedded Postgres socket (looked in $TMP/data/postgres-socket)"
database="mb_$PORTAL"
pg=(-h "$socket_dir" -p 5432 -U authenticator -d "$database")

# RestHandler.read: set_config with the role and claims, then the select wrapped in
# json_agg, as one transaction; id bound as a parameter (:id under -M prepared).
# The plugin pipelines the four statements (one round trip); so does pgbench here.
cat >"$TMP/get.sql" <<EOF
\\set id random(1, $ROWS)
\\startpipeline
BEGIN READ ONLY;
SELECT set_config('role', 'anon', true), set_config('request.jwt.claims', :claims, true);
SELECT NULL::bigint, count("_r"), coalesce(json_agg("_r"), '[]')::text FROM (SELECT "t0".* FROM "public"."items" AS "t0" WHERE "t0"."id" = :id) AS "_r";
COMMIT;
\\endpipeline
EOF
# RestHandler.insert with return=minimal: json_populate_recordset over the body, whose
# JSON text the plugin binds; here the text is assembled from the row's unique id.
cat >"$TMP/post.sql" <<EOF
\\set n :n + 1
\\set id :base + :client_id * 1000000 + :n
\\startpipeline
BEGIN;
SELECT set_config('role', 'anon', true), set_config('request.jwt.claims', :claims, true);
INSERT INTO "public"."items" AS "_t" ("id", "name") SELECT "id", "name" FROM json_populate_recordset(NULL::"public"."items", ('[{"id":' || :id || ',"name":"bench"}]')::json);
COMMIT;
\\endpipeline
EOF

cat >"$TMP/get.lua" <<'EOF'
-- One row by a random primary key.
local rows = tonumber(os.getenv("ROWS") or "10000")
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end
request = function()
  return wrk.format("GET", "/p/bench/rest/v1/items?id=eq." .. math.random(1, rows))
end
EOF
cat >"$TMP/post.lua" <<'EOF'
-- One new row per request: ids base + thread * 10^7 + n never repeat.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  base = tonumber(args[1])
  n = 0
end
request = function()
  n = n + 1
  local id = base + tid * 10000000 + n
  return wrk.format("POST", "/p/bench/rest/v1/items", nil, '{"id":' .. id .. ',"name":"bench"}')
end
EOF

# Unique ids: wrk uses base + thread * 10^7 + n with bases 2*10^8, 3*10^8, ...; pgbench
# base + client * 10^6 + n with bases 1.1*10^9, 1.2*10^9, ... (up to 8 sizes in CLIENTS).
# Checks the scripts once (a failing transaction would abort pgbench's clients).
for script in get post; do
  PGOPTIONS="" pgbench -n -M prepared -c 1 -t 2 -D "claims=$claims" -D n=0 -D base=1900000000 \
    -f "$TMP/$script.sql" "${pg[@]}" >"$TMP/check-$script.txt" 2>&1 ||
    { cat "$TMP/check-$script.txt" >&2; die "pgbench cannot run $TMP/$script.sql"; }
done

# --- load ------------------------------------------------------------------------------

run_load() {
  "$@" &
  load_pid=$!
  local rc=0
  wait "$load_pid" || rc=$?
  load_pid=""
  return "$rc"
}

declare -A result=() bad=()

# wrk against $rest/items; fills result[key] with 2xx answers per second.
measure_wrk() {
  local key=$1 clients=$2 script=$3 base=$4 out="$TMP/wrk-$1.txt" total reqs non2xx
  local args=(-t"$THREADS" -c"$clients" "${auth[@]}" -s "$TMP/$script.lua")
  if [[ $script == post ]]; then args+=(-H 'Content-Type: application/json' -H 'Prefer: return=minimal'); fi
  if ((WARMUP > 0)); then
    run_load timeout $((WARMUP + 30)) env ROWS="$ROWS" wrk "${args[@]}" -d"${WARMUP}s" "$rest/items" -- "$((base + 5000000))" \
      >/dev/null 2>&1 || true
  fi
  run_load timeout $((DURATION + 60)) env ROWS="$ROWS" wrk "${args[@]}" -d"${DURATION}s" --latency "$rest/items" -- "$base" \
    >"$out" 2>&1 || { cat "$out" >&2; note "wrk failed ($key)"; return 0; }
  total="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
  reqs="$(awk '/ requests in / {print $1}' "$out")"
  non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
  bad[$key]="${non2xx:-0}"
  result[$key]="$(awk -v t="${total:-0}" -v r="${reqs:-0}" -v b="${non2xx:-0}" \
    'BEGIN { if (r > 0) printf "%.1f", t * (r - b) / r; else print "0" }')"
  if ((${bad[$key]} > 0)); then note "warning: $key: ${bad[$key]} non-2xx answers"; fi
}

measure_pgbench() {
  local key=$1 clients=$2 script=$3 base=$4 out="$TMP/pgbench-$1.txt"
  run_load timeout $((DURATION + 60)) pgbench -n -M prepared -c "$clients" -j "$THREADS" -T "$DURATION" \
    -D "claims=$claims" -D n=0 -D "base=$base" -f "$TMP/$script.sql" "${pg[@]}" >"$out" 2>&1 ||
    { cat "$out" >&2; note "pgbench failed ($key)"; return 0; }
  result[$key]="$(awk '/^tps = / {print $3; exit}' "$out")"
  bad[$key]="$(awk '/number of failed transactions:/ {print $5; exit}' "$out")"
  bad[$key]="${bad[$key]:-0}"
}

run=0
for clients in $CLIENTS; do
  run=$((run + 1))
  note "GET, $clients clients: wrk through the gateway (${DURATION} s)"
  measure_wrk "get-ours-$clients" "$clients" get 0
  note "GET, $clients clients: pgbench"
  measure_pgbench "get-peer-$clients" "$clients" get 0
  note "POST, $clients clients: wrk through the gateway"
  measure_wrk "post-ours-$clients" "$clients" post $((100000000 + run * 100000000))
  note "POST, $clients clients: pgbench"
  measure_pgbench "post-peer-$clients" "$clients" post $((1000000000 + run * 100000000))
done

# --- report ----------------------------------------------------------------------------

ratio() {
  if [[ -n ${1:-} && -n ${2:-} ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
  else
    echo n/a
  fi
}
whole() { if [[ -n ${1:-} ]]; then printf '%.0f' "$1"; else echo n/a; fi; }

echo
echo "REST benchmark: ${DURATION} s per run, wrk -t$THREADS / pgbench -j$THREADS -M prepared, loopback, $(nproc) cores"
echo "items: $ROWS rows, RLS on; binaries: $BIN"
printf '%-10s %8s %16s %8s %16s %8s %7s\n' request clients "ours req/s" non-2xx "pgbench tps" failed ratio
for clients in $CLIENTS; do
  for kind in get post; do
    printf '%-10s %8s %16s %8s %16s %8s %7s\n' "$kind" "$clients" "$(whole "${result[$kind-ours-$clients]:-}")" \
      "${bad[$kind-ours-$clients]:--}" "$(whole "${result[$kind-peer-$clients]:-}")" "${bad[$kind-peer-$clients]:--}" \
      "$(ratio "${result[$kind-ours-$clients]:-}" "${result[$kind-peer-$clients]:-}")"
  done
done
echo
unmeasured=0
for kind in get post; do
  for clients in $CLIENTS; do
    ours="${result[$kind-ours-$clients]:-}"
    peer="${result[$kind-peer-$clients]:-}"
    [[ -n $ours && -n $peer ]] || unmeasured=1
    echo "rest $kind, $clients clients: ours $(whole "$ours") req/s, peer $(whole "$peer") tps, ratio $(ratio "$ours" "$peer")"
  done
done
if ((unmeasured)); then die "some figures could not be measured (see above)"; fi
