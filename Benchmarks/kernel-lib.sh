# Helpers for benchmark scripts that run a release kernel with its embedded Postgres
# and Redis (as rest.sh and gateway.sh do): process control, a free port, start and
# stop the kernel, create a portal and read its keys, the SQL console.
# Sourced, not run. The caller sets NAME (its log prefix), TMP and BIN, and calls
# kernel_cleanup from its EXIT trap.
# shellcheck shell=bash

die() { printf '%s: error: %s\n' "$NAME" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$NAME" "$*" >&2; }

server_pid=""

# True while the process exists and is not a zombie.
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ ${stat:0:1} != Z ]]
}

# Sends TERM, waits up to $2 seconds, then KILL; reaps our child.
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

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Stops the kernel (it stops its embedded Postgres and Redis on TERM), then anything
# left in its process group (it was started as a group leader).
kernel_cleanup() {
  if [[ -n $server_pid ]]; then
    stop_process "$server_pid" 30
    if kill -TERM -- "-$server_pid" 2>/dev/null; then
      sleep 2
      kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    server_pid=""
  fi
}

# kernel_start PORT CONFIG_BODY: writes $TMP/meltybase.toml (a listener on 127.0.0.1:PORT,
# then CONFIG_BODY), starts `meltybase serve` in its own process group and waits until
# /v1/system/status answers. Sets server_pid and kernel (its base URL).
kernel_start() {
  local port=$1 body=$2 started timeout=${STARTUP_TIMEOUT:-120}
  mkdir -p "$TMP/data"
  chmod 755 "$TMP/data"
  cat >"$TMP/meltybase.toml" <<EOF
# Written by $NAME. Plugin paths resolve against the executable's folder.
[[listeners]]
host = "127.0.0.1"
port = $port

$body
EOF
  note "starting meltybase on 127.0.0.1:$port (log: $TMP/server.log)"
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
    if ((SECONDS - started >= timeout)); then
      tail -n 30 "$TMP/server.log" >&2 || true
      die "meltybase did not listen within $timeout s (log above)"
    fi
    sleep 0.2
  done
  note "meltybase listens after $((SECONDS - started)) s"
}

# meltybase_cli ARGS...: the CLI against the running kernel's config and data.
meltybase_cli() { "$BIN/meltybase" "$@" --config "$TMP/meltybase.toml" --data-dir "$TMP/data"; }

# portal_create NAME PLUGINS...: creates the portal; sets anon and service (API keys).
portal_create() {
  local name=$1
  shift
  meltybase_cli portal create "$name" --plugins "$@" >"$TMP/portal.txt" 2>&1 ||
    { cat "$TMP/portal.txt" >&2; die "meltybase portal create $name failed"; }
  anon="$(awk '$1 == "anon:" {print $NF}' "$TMP/portal.txt")"
  service="$(awk '$1 == "service_role:" {print $NF}' "$TMP/portal.txt")"
  [[ -n $anon && -n $service ]] || { cat "$TMP/portal.txt" >&2; die "no keys in the output of portal create"; }
}

# portal_sql PORTAL < SQL: runs SQL through the Database plugin's console as the owner.
portal_sql() {
  local portal=$1 body status
  body="$(python3 -c 'import json, sys; print(json.dumps({"query": sys.stdin.read()}))')"
  status="$(curl -s -o "$TMP/sql.out" -w '%{http_code}' --max-time 120 -X POST "$kernel/p/$portal/sql/v1/query" \
    -H "apikey: $service" -H "Authorization: Bearer $service" -H 'Content-Type: application/json' \
    --data-binary "$body")" || status=000
  [[ $status == 200 ]] || { cat "$TMP/sql.out" >&2; die "SQL console answered $status"; }
}

# The embedded Postgres' socket folder.
postgres_socket_dir() {
  local dir="$TMP/data/postgres-socket"
  if [[ ! -S $dir/.s.PGSQL.5432 ]]; then
    dir="$(grep -o 'socket=[^ ]*' "$TMP/server.log" | head -n 1 | cut -d= -f2 | tr -d '"')"
  fi
  [[ -S $dir/.s.PGSQL.5432 ]] || die "cannot find the embedded Postgres socket (looked in $TMP/data/postgres-socket)"
  echo "$dir"
}

# ratio A B, whole N: formatting for the figure lines.
ratio() {
  if [[ -n ${1:-} && -n ${2:-} && ${1:-} != n/a && ${2:-} != n/a ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
  else
    echo n/a
  fi
}
whole() { if [[ -n ${1:-} && ${1:-} != n/a ]]; then printf '%.0f' "$1"; else echo n/a; fi; }

# field KEY FILE: the value of KEY=value on the RESULT line of a bench-realtime output.
field() { awk -v k="$1" '/^RESULT / { for (i = 2; i <= NF; i++) { split($i, p, "="); if (p[1] == k) { print substr($i, length(k) + 2) } } }' "$2" | tail -n 1; }

# The process that serves: the supervisor's child started with --worker (the supervisor
# itself when it runs no worker).
kernel_worker_pid() {
  local child
  for child in $(pgrep -P "$server_pid"); do
    if tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null | grep -q -- '--worker'; then echo "$child"; return; fi
  done
  echo "$server_pid"
}
