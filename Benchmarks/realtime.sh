#!/usr/bin/env bash
# Realtime benchmark (shared design: performance.md; issue 13). One release kernel with
# the Database and Realtime plugins and one portal; the load generator is bench-realtime
# (Benchmarks/RealtimeLoad: Phoenix vsn=1.0.0 sockets on bare swift-nio pipelines,
# source addresses spread over 127.0.0.0/8). In one run:
#
#   idle       N sockets opened and joined to one channel, held; how many stay open and
#              the kernel worker's VmRSS growth per socket (over the fresh kernel's). Peer: published figures only
#              (Supabase-style 20k on 2 vCPU; PocketBase 10k).
#   broadcast  N subscribers on one channel, one publisher sending MESSAGES broadcasts at
#              RATE/s (WebSocket, or PUBLISH=http: POST /realtime/v1/api/broadcast);
#              delivered msg/s and send -> delivery p50/p99. Peer in the same run: a
#              Redis (redis-server started here) with N SUBSCRIBE connections and one
#              PUBLISHer sending the same payloads at the same rate, both driven by
#              bench-realtime (same client code, loops and latency clock).
#   changes    N postgres_changes subscribers of table rt, each a distinct signed-up user
#              (own JWT), RLS `owner is null or owner = auth.uid()`. Two runs per size:
#              "all" (pgbench inserts rows with owner null at CHANGES_ALL_RATE rows/s:
#              every subscriber receives each) gives delivered msg/s; "one" (rows at
#              CHANGES_ONE_RATE rows/s, each owned by one random subscriber) gives
#              commit -> client p50/p99 (rows carry clock_timestamp() in µs, compared
#              with the client's CLOCK_REALTIME). Peer: a LISTEN/NOTIFY round trip at the
#              same rate (pgbench NOTIFY with clock_timestamp(), bench-realtime LISTEN).
# Prints a table, then one line per figure and size: `name: ours X, peer Y, ratio R`.
# A benchmark, not a test: it asserts no timing. It exits non-zero only when something
# could not be measured.
#
# usage: Benchmarks/realtime.sh
# env:   BIN=<dir>                 folder with meltybase, libDatabasePlugin.so,
#                                  libRealtimePlugin.so and bench-realtime (default:
#                                  build them: swift build -c release --product ...)
#        MODES="idle broadcast changes"  which parts to run
#        IDLE_SIZES="10000 30000 50000"  sockets held (clamped to the fd limit, see below)
#        IDLE_HOLD=5               seconds to hold them
#        BROADCAST_SIZES="1000 10000"    subscribers
#        MESSAGES=500 RATE=100     broadcasts and broadcasts/s per run
#        PUBLISH=ws                ws or http
#        CHANGES_SIZES="100 1000"  postgres_changes subscribers (distinct users)
#        CHANGES_SECONDS=10        seconds of inserts per run
#        CHANGES_ALL_RATE=50       rows/s visible to all subscribers (throughput run)
#        CHANGES_ONE_RATE=1000     rows/s each visible to one subscriber (latency run)
#        CHANGES_KINDS="all one"   which changes runs: all, one, filtered (rows as "one", each
#                                  subscriber filtering owner=eq.<its user id>: RLS is asked
#                                  only about the rows its filter matched)
#        CHANGES_IDLE=10           a changes run ends this many seconds after the last delivery
#        THREADS=2                 bench-realtime event loop threads
#        CONNECT_RATE=5000         new sockets per second at most
#        SOCKETS_PER_GENERATOR=N   sockets per bench-realtime process (default: the fd
#                                  limit less 200; more sockets run more processes)
#        SKIP_SETUP=1              do not run scripts/setup.sh --bench first
#        KEEP_TMP=1                keep the temp folder (kernel log, outputs)
# fd limit: the kernel and each bench-realtime process need one descriptor per socket.
# The script raises the soft RLIMIT_NOFILE to the hard one; it cannot raise the hard
# one (that needs CAP_SYS_RESOURCE). The kernel cannot hold more sockets than that, so
# larger sizes are clamped (and said so); the generator shards across processes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME=realtime
# shellcheck source=Benchmarks/kernel-lib.sh
source "$ROOT/Benchmarks/kernel-lib.sh"

MODES="${MODES:-idle broadcast changes}"
IDLE_SIZES="${IDLE_SIZES:-10000 30000 50000}"
IDLE_HOLD="${IDLE_HOLD:-5}"
BROADCAST_SIZES="${BROADCAST_SIZES:-1000 10000}"
MESSAGES="${MESSAGES:-500}"
RATE="${RATE:-100}"
PUBLISH="${PUBLISH:-ws}"
CHANGES_SIZES="${CHANGES_SIZES:-100 1000}"
CHANGES_SECONDS="${CHANGES_SECONDS:-10}"
CHANGES_ALL_RATE="${CHANGES_ALL_RATE:-50}"
CHANGES_ONE_RATE="${CHANGES_ONE_RATE:-1000}"
CHANGES_KINDS="${CHANGES_KINDS:-all one}"
CHANGES_IDLE="${CHANGES_IDLE:-10}"
THREADS="${THREADS:-2}"
CONNECT_RATE="${CONNECT_RATE:-5000}"
PORTAL=bench

# shellcheck disable=SC2086 # lists of sizes
for n in $IDLE_SIZES $BROADCAST_SIZES $CHANGES_SIZES "$CHANGES_IDLE" "$IDLE_HOLD" "$MESSAGES" "$RATE" "$CHANGES_SECONDS" \
  "$CHANGES_ALL_RATE" "$CHANGES_ONE_RATE" "$THREADS" "$CONNECT_RATE"; do
  [[ $n =~ ^[0-9]+$ ]] || die "sizes, rates and seconds take whole numbers (got '$n')"
done
[[ $PUBLISH == ws || $PUBLISH == http ]] || die "PUBLISH is ws or http (got '$PUBLISH')"
for kind in $CHANGES_KINDS; do
  [[ $kind == all || $kind == one || $kind == filtered ]] || die "CHANGES_KINDS takes all, one and filtered (got '$kind')"
done

if [[ -z ${SKIP_SETUP:-} ]]; then
  bash "$ROOT/scripts/setup.sh" --bench >&2
fi
# shellcheck source=scripts/env.sh
[[ -f $ROOT/scripts/env.sh ]] && source "$ROOT/scripts/env.sh"
for tool in curl python3 setsid timeout pgbench redis-server redis-cli; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs it)"
done

if [[ -z ${BIN:-} ]]; then
  note "building meltybase, the Database and Realtime plugins and bench-realtime (release)"
  (
    cd "$ROOT"
    for product in meltybase DatabasePlugin RealtimePlugin bench-realtime; do
      swift build -c release --product "$product"
    done
  ) >&2
  BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)"
fi
BIN="$(cd "$BIN" 2>/dev/null && pwd)" || die "no folder BIN=$BIN"
for file in meltybase libDatabasePlugin.so libRealtimePlugin.so bench-realtime; do
  [[ -e $BIN/$file ]] || die "no $file in BIN=$BIN (swift build -c release --product ...)"
done
GEN="$BIN/bench-realtime"

# Every socket is a descriptor in the kernel and in a generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT="$(ulimit -n)"
[[ $FD_LIMIT == unlimited ]] && FD_LIMIT=1048576
# Room the kernel keeps for itself (Postgres and Redis connections, plugins, logs).
MAX_SOCKETS=$((FD_LIMIT - 1000))
PER_GENERATOR="${SOCKETS_PER_GENERATOR:-$((FD_LIMIT - 200))}"
note "RLIMIT_NOFILE $FD_LIMIT (hard $(ulimit -Hn)): at most $MAX_SOCKETS sockets in the kernel"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/meltybase-realtime.XXXXXX")"
chmod 755 "$TMP"
gen_pids=()
redis_pid=""

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${gen_pids[@]}"; do stop_process "$pid" 2; done
  if [[ -n $redis_pid ]]; then stop_process "$redis_pid" 5; fi
  kernel_cleanup
  if [[ -n ${KEEP_TMP:-} ]]; then note "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the kernel and the portal -----------------------------------------------------

port="$(free_port)"
kernel_start "$port" '[plugins.database]
path = "libDatabasePlugin.so"

[plugins.realtime]
path = "libRealtimePlugin.so"

# The per-portal quotas lifted: measure the load, do not refuse it.
[plugins.realtime.config]
max_connections = 10000000
max_joins_per_second = 1000000
max_messages_per_second = 100000000

# Measure the load, do not throttle it.
[rate_limit]
per_client = { rate = 10000000, burst = 100000000 }
per_portal = { rate = 10000000, burst = 100000000 }'
portal_create "$PORTAL" database realtime

ws_url="ws://127.0.0.1:$port/p/$PORTAL/realtime/v1/websocket?apikey=$anon&vsn=1.0.0"
http_url="http://127.0.0.1:$port/p/$PORTAL/realtime/v1/api/broadcast"
common=(--threads "$THREADS" --connect-rate "$CONNECT_RATE")

# The running kernel picks the portal up within about a second: wait until one socket joins.
for ((i = 0; i < 60; i++)); do
  "$GEN" idle --url "$ws_url" --connections 1 --hold 0 --seconds 5 "${common[@]}" >"$TMP/probe.txt" 2>&1 || true
  [[ $(field open "$TMP/probe.txt") == 1 ]] && break
  sleep 0.5
done
[[ $(field open "$TMP/probe.txt") == 1 ]] || { cat "$TMP/probe.txt" >&2; die "no socket could join a channel (output above)"; }

declare -A R=()
unmeasured=0
# The worker holds the sockets (it may be restarted by the supervisor: looked up each time).
kernel_fds() { find "/proc/$(kernel_worker_pid)/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
kernel_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$(kernel_worker_pid)/status"; }

# Waits (up to 60 s) until the kernel closed the sockets of the previous run.
settle_kernel() {
  local base=$1 i
  for ((i = 0; i < 300; i++)); do
    (($(kernel_fds) <= base + 50)) && return 0
    sleep 0.2
  done
  note "warning: the kernel still holds $(kernel_fds) descriptors (was $base)"
}

run_gen() { # out-file args...: runs a generator in the foreground, interruptible
  local out=$1 rc=0
  shift
  "$GEN" "$@" >"$out" 2>"$out.err" &
  gen_pids=($!)
  wait "${gen_pids[0]}" || rc=$?
  gen_pids=()
  return "$rc"
}

# --- idle ---------------------------------------------------------------------------

if [[ " $MODES " == *" idle "* ]]; then
  # The fresh kernel's size: memory freed after a run stays in the allocator, so each
  # size is weighed against this, not against the end of the previous size.
  rss_base="$(kernel_rss)"
  for size in $IDLE_SIZES; do
    n=$size
    if ((n > MAX_SOCKETS)); then
      note "idle $size: clamped to $MAX_SOCKETS sockets (RLIMIT_NOFILE $FD_LIMIT, no CAP_SYS_RESOURCE to raise it)"
      n=$MAX_SOCKETS
    fi
    base_fds="$(kernel_fds)"
    shards=$(((n + PER_GENERATOR - 1) / PER_GENERATOR))
    rss_before=$rss_base
    note "idle: $n sockets ($shards generator process(es)), hold ${IDLE_HOLD} s; kernel VmRSS $(kernel_rss) KB (fresh: $rss_base KB)"
    gen_pids=()
    for ((s = 0; s < shards; s++)); do
      count=$((n / shards + (s < n % shards ? 1 : 0)))
      "$GEN" idle --url "$ws_url" --connections "$count" --hold $((IDLE_HOLD + 5)) --seconds $((count / 1000 + 60 + IDLE_HOLD)) \
        --connect-rate $((CONNECT_RATE / shards)) --threads "$THREADS" >"$TMP/idle-$size-$s.txt" 2>"$TMP/idle-$size-$s.err" &
      gen_pids+=($!)
    done
    # Weigh the kernel once every shard holds its sockets.
    deadline=$((SECONDS + n / 1000 + 90))
    while ((SECONDS < deadline)); do
      ready=0
      for ((s = 0; s < shards; s++)); do grep -q '^HOLDING' "$TMP/idle-$size-$s.txt" 2>/dev/null && ready=$((ready + 1)); done
      ((ready == shards)) && break
      sleep 0.2
    done
    sleep 1
    rss_after="$(kernel_rss)"
    fds_held="$(kernel_fds)"
    for pid in "${gen_pids[@]}"; do wait "$pid" || true; done
    gen_pids=()
    open=0
    for ((s = 0; s < shards; s++)); do
      o="$(field open "$TMP/idle-$size-$s.txt")"
      [[ -n $o ]] || { cat "$TMP/idle-$size-$s.err" >&2; note "idle shard $s gave no result"; }
      open=$((open + ${o:-0}))
      grep -h '^INFO first_error' "$TMP/idle-$size-$s.txt" >&2 || true
      g="$(field generator_rss_kb "$TMP/idle-$size-$s.txt")"
      [[ -n $g ]] && note "idle $size: generator $s holds ${o:-0} sockets in $g KB VmRSS"
    done
    R[idle-asked-$size]=$n
    R[idle-open-$size]=$open
    R[idle-fds-$size]=$fds_held
    if ((open > 0)); then
      R[idle-kb-$size]="$(awk -v a="$rss_after" -v b="$rss_before" -v n="$open" 'BEGIN { printf "%.1f", (a - b) / n }')"
    else
      unmeasured=1
    fi
    R[idle-rss-$size]=$rss_after
    note "idle $size: $open open, kernel VmRSS $rss_before -> $rss_after KB, ${R[idle-kb-$size]:-n/a} KB each"
    settle_kernel "$base_fds"
  done
fi

# --- broadcast ----------------------------------------------------------------------

if [[ " $MODES " == *" broadcast "* ]]; then
  redis_port="$(free_port)"
  mkdir -p "$TMP/redis"
  # protected-mode off: the subscribers come from 127.1.x.y, which Redis does not count
  # as loopback; it listens on 127.0.0.1 only.
  (cd "$TMP/redis" && exec redis-server --port "$redis_port" --bind 127.0.0.1 --protected-mode no --save '' \
    --appendonly no --maxclients $((FD_LIMIT - 64)) --client-output-buffer-limit 'pubsub 256mb 64mb 60') \
    >"$TMP/redis/redis.log" 2>&1 &
  redis_pid=$!
  for ((i = 0; i < 50; i++)); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  for size in $BROADCAST_SIZES; do
    n=$size
    ((n + 1 <= MAX_SOCKETS)) || { note "broadcast $size: clamped to $((MAX_SOCKETS - 1))"; n=$((MAX_SOCKETS - 1)); }
    seconds=$((MESSAGES / (RATE > 0 ? RATE : 1) + n / 1000 + 90))
    base_fds="$(kernel_fds)"
    publisher=(--publish ws)
    [[ $PUBLISH == http ]] && publisher=(--publish http --http-url "$http_url" --service-key "$service")
    note "broadcast: $n subscribers, $MESSAGES messages at $RATE/s, publisher $PUBLISH"
    run_gen "$TMP/bc-ours-$size.txt" broadcast --url "$ws_url" --subscribers "$n" --messages "$MESSAGES" --rate "$RATE" \
      --seconds "$seconds" "${publisher[@]}" "${common[@]}" || note "bench-realtime broadcast exited $?"
    note "broadcast peer: Redis pub/sub, $n subscribers"
    run_gen "$TMP/bc-peer-$size.txt" redis --redis-port "$redis_port" --subscribers "$n" --messages "$MESSAGES" --rate "$RATE" \
      --seconds "$seconds" "${common[@]}" || note "bench-realtime redis exited $?"
    for side in ours peer; do
      f="$TMP/bc-$side-$size.txt"
      grep -h '^INFO first_error' "$f" >&2 || true
      R[bc-$side-sub-$size]="$(field subscribed "$f")"
      R[bc-$side-del-$size]="$(field deliveries "$f")"
      R[bc-$side-exp-$size]="$(field expected "$f")"
      R[bc-$side-rate-$size]="$(field msg_per_s "$f")"
      R[bc-$side-p50-$size]="$(field p50_ms "$f")"
      R[bc-$side-p99-$size]="$(field p99_ms "$f")"
      [[ -n ${R[bc-$side-rate-$size]} && ${R[bc-$side-del-$size]:-0} != 0 ]] || { cat "$f.err" >&2; unmeasured=1; }
    done
    settle_kernel "$base_fds"
  done
  stop_process "$redis_pid" 5
  redis_pid=""
fi

# --- postgres_changes ---------------------------------------------------------------

if [[ " $MODES " == *" changes "* ]]; then
  socket_dir="$(postgres_socket_dir)"
  pg=(-h "$socket_dir" -p 5432 -U meltybase -d "mb_$PORTAL")
  max_users=0
  for size in $CHANGES_SIZES; do ((size > max_users)) && max_users=$size; done
  ((max_users < MAX_SOCKETS)) || max_users=$((MAX_SOCKETS - 1))
  note "changes: table rt (RLS), $max_users users signed up"
  portal_sql "$PORTAL" <<'EOF'
create table if not exists rt (id bigserial primary key, owner uuid, sent_us bigint not null, body text);
alter table rt enable row level security;
create policy rt_read on rt for select to authenticated using (owner is null or owner = auth.uid());
grant select on rt to authenticated;
do $$ begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    alter publication supabase_realtime add table rt;
  end if;
end $$;
create table if not exists bench_users (n int primary key, id uuid not null);
EOF
  # Distinct users: sign-ups through /auth/v1 (their access tokens are the subscribers' JWTs).
  python3 - "$kernel/p/$PORTAL/auth/v1/signup" "$anon" "$max_users" "$TMP/tokens.txt" "$TMP/users.csv" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, key, count, tokens_path, users_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def signup(i):
    body = json.dumps({"email": f"rt{i}@bench.example", "password": f"bench-password-{i}"}).encode()
    req = urllib.request.Request(url, data=body, method="POST",
        headers={"apikey": key, "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        answer = json.load(r)
    return answer["access_token"], (answer.get("user") or {}).get("id")
with ThreadPoolExecutor(4) as pool:
    results = list(pool.map(signup, range(1, count + 1)))
with open(tokens_path, "w") as t, open(users_path, "w") as u, open(tokens_path + ".filters", "w") as f:
    for n, (token, uid) in enumerate(results, 1):
        t.write(token + "\n")
        u.write(f"{n},{uid}\n")
        f.write(f"owner=eq.{uid}\n")
PY
  psql -q "${pg[@]}" -c "\\copy bench_users from '$TMP/users.csv' csv" >/dev/null || die "cannot load bench_users"

  # The inserts (pgbench, owner of the portal database) and the NOTIFY peer.
  cat >"$TMP/insert-all.sql" <<'EOF'
insert into rt (owner, sent_us) values (null, (extract(epoch from clock_timestamp()) * 1000000)::bigint);
EOF
  cat >"$TMP/notify.sql" <<'EOF'
select pg_notify('bench', (extract(epoch from clock_timestamp()) * 1000000)::bigint::text);
EOF
  for size in $CHANGES_SIZES; do
    n=$size
    ((n < MAX_SOCKETS)) || n=$((MAX_SOCKETS - 1))
    cat >"$TMP/insert-one.sql" <<EOF
\\set k random(1, $n)
insert into rt (owner, sent_us) select id, (extract(epoch from clock_timestamp()) * 1000000)::bigint from bench_users where n = :k;
EOF
    base_fds="$(kernel_fds)"
    for kind in $CHANGES_KINDS; do
      rate=$CHANGES_ALL_RATE
      [[ $kind == one || $kind == filtered ]] && rate=$CHANGES_ONE_RATE
      script=$kind
      filters=()
      if [[ $kind == filtered ]]; then
        script=one
        filters=(--filters "$TMP/tokens.txt.filters")
      fi
      out="$TMP/ch-$kind-$size.txt"
      note "changes ($kind): $n subscribers, $rate rows/s for $CHANGES_SECONDS s"
      "$GEN" changes --url "$ws_url" --subscribers "$n" --tokens "$TMP/tokens.txt" "${filters[@]}" --table rt --idle "$CHANGES_IDLE" \
        --seconds $((CHANGES_SECONDS + n / 500 + CHANGES_IDLE + 120)) "${common[@]}" >"$out" 2>"$out.err" &
      gen_pids=($!)
      for ((i = 0; i < 600; i++)); do grep -q '^READY' "$out" && break; alive "${gen_pids[0]}" || break; sleep 0.2; done
      grep -h '^READY' "$out" >&2 || true
      pgbench -n -R "$rate" -T "$CHANGES_SECONDS" -c 2 -j 1 -f "$TMP/insert-$script.sql" "${pg[@]}" >"$TMP/pgbench-$kind-$size.txt" 2>&1 ||
        { cat "$TMP/pgbench-$kind-$size.txt" >&2; note "pgbench inserts failed"; }
      wait "${gen_pids[0]}" || true
      gen_pids=()
      grep -h '^INFO first_error' "$out" >&2 || true
      rows="$(awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}' "$TMP/pgbench-$kind-$size.txt")"
      R[ch-$kind-rows-$size]="${rows:-0}"
      R[ch-$kind-del-$size]="$(field deliveries "$out")"
      R[ch-$kind-rate-$size]="$(field msg_per_s "$out")"
      R[ch-$kind-p50-$size]="$(field p50_ms "$out")"
      R[ch-$kind-p99-$size]="$(field p99_ms "$out")"
      R[ch-$kind-sub-$size]="$(field subscribed "$out")"
      [[ ${R[ch-$kind-sub-$size]:-0} != 0 ]] || R[ch-$kind-rate-$size]=""
      [[ ${R[ch-$kind-del-$size]:-0} != 0 ]] || { tail -n 5 "$out.err" >&2; unmeasured=1; }
    done
    settle_kernel "$base_fds"
  done
  # The peer: a LISTEN/NOTIFY round trip at the latency run's rate.
  out="$TMP/notify.txt"
  note "changes peer: LISTEN/NOTIFY, $CHANGES_ONE_RATE notifications/s for $CHANGES_SECONDS s"
  "$GEN" pg-listen --socket "$socket_dir/.s.PGSQL.5432" --user meltybase --database "mb_$PORTAL" --channel bench \
    --idle 3 --seconds $((CHANGES_SECONDS + 60)) >"$out" 2>"$out.err" &
  gen_pids=($!)
  for ((i = 0; i < 100; i++)); do grep -q '^READY' "$out" && break; sleep 0.1; done
  pgbench -n -R "$CHANGES_ONE_RATE" -T "$CHANGES_SECONDS" -c 2 -j 1 -f "$TMP/notify.sql" "${pg[@]}" >"$TMP/pgbench-notify.txt" 2>&1 ||
    { cat "$TMP/pgbench-notify.txt" >&2; note "pgbench NOTIFY failed"; }
  wait "${gen_pids[0]}" || true
  gen_pids=()
  R[notify-del]="$(field deliveries "$out")"
  R[notify-p50]="$(field p50_ms "$out")"
  R[notify-p99]="$(field p99_ms "$out")"
  [[ ${R[notify-del]:-0} != 0 ]] || { cat "$out" "$out.err" >&2; unmeasured=1; }
fi

# --- report -------------------------------------------------------------------------

echo
echo "Realtime benchmark: loopback, $(nproc) cores, bench-realtime --threads $THREADS, RLIMIT_NOFILE $FD_LIMIT"
echo "binaries: $BIN; kernel worker pid $(kernel_worker_pid) (VmRSS and descriptors read from it)"
if [[ " $MODES " == *" idle "* ]]; then
  echo
  printf '%-10s %8s %8s %12s %12s\n' idle asked open "kernel fds" "KB/socket"
  for size in $IDLE_SIZES; do
    printf '%-10s %8s %8s %12s %12s\n' "$size" "${R[idle-asked-$size]:-n/a}" "${R[idle-open-$size]:-n/a}" \
      "${R[idle-fds-$size]:-n/a}" "${R[idle-kb-$size]:-n/a}"
  done
fi
if [[ " $MODES " == *" broadcast "* ]]; then
  echo
  printf '%-22s %11s %12s %12s %10s %10s\n' "broadcast ($PUBLISH)" subscribed deliveries "msg/s" "p50 ms" "p99 ms"
  for size in $BROADCAST_SIZES; do
    for side in ours peer; do
      label="$size ours"
      [[ $side == peer ]] && label="$size redis"
      printf '%-22s %11s %12s %12s %10s %10s\n' "$label" "${R[bc-$side-sub-$size]:-n/a}" \
        "${R[bc-$side-del-$size]:-n/a}/${R[bc-$side-exp-$size]:-n/a}" "${R[bc-$side-rate-$size]:-n/a}" \
        "${R[bc-$side-p50-$size]:-n/a}" "${R[bc-$side-p99-$size]:-n/a}"
    done
  done
fi
if [[ " $MODES " == *" changes "* ]]; then
  echo
  printf '%-18s %11s %8s %12s %12s %10s %10s\n' changes subscribed rows deliveries "msg/s" "p50 ms" "p99 ms"
  for size in $CHANGES_SIZES; do
    for kind in $CHANGES_KINDS; do
      printf '%-18s %11s %8s %12s %12s %10s %10s\n' "$size rows->$kind" "${R[ch-$kind-sub-$size]:-n/a}" "${R[ch-$kind-rows-$size]:-n/a}" \
        "${R[ch-$kind-del-$size]:-n/a}" "${R[ch-$kind-rate-$size]:-n/a}" "${R[ch-$kind-p50-$size]:-n/a}" "${R[ch-$kind-p99-$size]:-n/a}"
    done
  done
  printf '%-18s %11s %8s %12s %12s %10s %10s\n' "LISTEN/NOTIFY" 1 - "${R[notify-del]:-n/a}" - "${R[notify-p50]:-n/a}" "${R[notify-p99]:-n/a}"
fi
echo
if [[ " $MODES " == *" idle "* ]]; then
  # The fresh kernel's size: memory freed after a run stays in the allocator, so each
  # size is weighed against this, not against the end of the previous size.
  rss_base="$(kernel_rss)"
  for size in $IDLE_SIZES; do
    echo "realtime idle sockets, $size asked: ours ${R[idle-open-$size]:-n/a} open at ${R[idle-kb-$size]:-n/a} KB each, peer 20000 (published, Supabase-style on 2 vCPU), ratio $(ratio "${R[idle-open-$size]:-}" 20000)"
  done
fi
if [[ " $MODES " == *" broadcast "* ]]; then
  for size in $BROADCAST_SIZES; do
    echo "realtime broadcast, $size subscribers: ours $(whole "${R[bc-ours-rate-$size]:-}") msg/s (p99 ${R[bc-ours-p99-$size]:-n/a} ms), peer redis $(whole "${R[bc-peer-rate-$size]:-}") msg/s (p99 ${R[bc-peer-p99-$size]:-n/a} ms), ratio $(ratio "${R[bc-ours-rate-$size]:-}" "${R[bc-peer-rate-$size]:-}")"
  done
fi
if [[ " $MODES " == *" changes "* ]]; then
  for size in $CHANGES_SIZES; do
    if [[ " $CHANGES_KINDS " == *" all "* ]]; then
      echo "realtime changes with RLS, $size subscribers (rows to all): ours $(whole "${R[ch-all-rate-$size]:-}") msg/s, peer 3500 msg/s (Supabase's published cap), ratio $(ratio "${R[ch-all-rate-$size]:-}" 3500)"
    fi
    for kind in one filtered; do
      [[ " $CHANGES_KINDS " == *" $kind "* ]] || continue
      how="rows to one"
      [[ $kind == filtered ]] && how="rows to one, each subscriber filtering its own"
      echo "realtime changes commit->client p99, $size subscribers ($how, $CHANGES_ONE_RATE/s): ours ${R[ch-$kind-p99-$size]:-n/a} ms (p50 ${R[ch-$kind-p50-$size]:-n/a}), peer LISTEN/NOTIFY ${R[notify-p99]:-n/a} ms (p50 ${R[notify-p50]:-n/a}), ratio $(ratio "${R[ch-$kind-p99-$size]:-}" "${R[notify-p99]:-}")"
    done
  done
fi
if ((unmeasured)); then die "some figures could not be measured (see above)"; fi
