#!/usr/bin/env bash
# Vault benchmark (shared design: performance.md). In one run:
#
#   raw AES-256-GCM  `meltybase vault bench` (the Vault's envelope: fresh random
#                    nonce, AAD, seal or open of one record through OpenSSL EVP)
#                    vs `openssl speed -aead -evp aes-256-gcm` (a TLS-like AEAD
#                    record per operation) for the same record sizes
#   secret get       GET /p/bench/vault/v1/secrets/BENCH_KEY/value (service_role
#                    key; decrypt plus one hash-chained audit entry per read)
#   secret put       PUT /p/bench/vault/v1/secrets/BENCH_KEY (a new encrypted
#                    version per request)
#   secret metadata  GET /p/bench/vault/v1/secrets/BENCH_KEY (one indexed read,
#                    no decryption, no audit entry): shows what the audit costs
#                    both vs the kernel-native echo route with wrk, same
#                    connections and duration
# Prints a table, then one line per figure: `name: ours X, peer Y, ratio R`.
# A benchmark, not a test: it asserts no timing.
#
# usage: Benchmarks/vault.sh
# env:   BIN=<dir>            release build folder holding meltybase and
#                             libVaultPlugin.so (default: build them)
#        SIZES="16 256 1024 8192 16384"  record sizes for the raw comparison
#        CRYPTO_SECONDS=2     seconds per size and tool
#        DURATION=10 WARMUP=2 CONNECTIONS=16 THREADS=2   wrk settings
#        KEEP_TMP=1           keep the temp folder (server log)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="${SIZES:-16 256 1024 8192 16384}"
CRYPTO_SECONDS="${CRYPTO_SECONDS:-2}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"

die() { printf 'vault: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'vault: %s\n' "$*" >&2; }
for tool in wrk openssl curl python3 setsid; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs it)"
done

if [[ -z ${BIN:-} ]]; then
  note "building meltybase and the vault plugin (release)"
  (cd "$ROOT" && swift build -c release --product meltybase && swift build -c release --product VaultPlugin) >&2
  BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)"
fi
BIN="$(cd "$BIN" 2>/dev/null && pwd)" || die "no folder BIN=$BIN (build first: swift build -c release)"
[[ -x $BIN/meltybase && -f $BIN/libVaultPlugin.so ]] || die "no meltybase or libVaultPlugin.so in BIN=$BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/meltybase-vault.XXXXXX")"
chmod 755 "$TMP"
server_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n ${KEEP_TMP:-} ]]; then note "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# --- raw AES-256-GCM -----------------------------------------------------------

declare -A seal=() open=() ossl_enc=() ossl_dec=()
read -r -a sizes <<<"$SIZES"
note "raw AES-256-GCM: ${CRYPTO_SECONDS} s per size and direction"
# `meltybase vault bench` is the vault plugin's command (ABI 1.5): it needs the plugin
# configured and a master key for the plugin's init (the bench itself uses a random key).
cat >"$TMP/bench.toml" <<TOML
[kernel]
plugin_dir = "$BIN"
data_dir = "$TMP/bench-data"
log_level = "warning"

[plugins.vault]
path = "libVaultPlugin.so"
TOML
MELTYBASE_MASTER_KEY="$(openssl rand -hex 32)" "$BIN/meltybase" vault bench --config "$TMP/bench.toml" \
  --sizes "${sizes[@]}" --seconds "$CRYPTO_SECONDS" >"$TMP/ours.txt"
for size in "${sizes[@]}"; do
  seal[$size]="$(awk -v s="$size" '$1 == "size" && $2 == s":" {sub(/k$/, "", $4); print $4}' "$TMP/ours.txt")"
  open[$size]="$(awk -v s="$size" '$1 == "size" && $2 == s":" {sub(/k$/, "", $6); print $6}' "$TMP/ours.txt")"
  ossl_enc[$size]="$(openssl speed -aead -evp aes-256-gcm -bytes "$size" -seconds "$CRYPTO_SECONDS" 2>/dev/null |
    awk 'toupper($1) == "AES-256-GCM" {sub(/k$/, "", $2); print $2}')"
  ossl_dec[$size]="$(openssl speed -decrypt -aead -evp aes-256-gcm -bytes "$size" -seconds "$CRYPTO_SECONDS" 2>/dev/null |
    awk 'toupper($1) == "AES-256-GCM" {sub(/k$/, "", $2); print $2}')"
done

# --- through the gateway -------------------------------------------------------

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$TMP/plugins.toml" <<TOML
[kernel]
plugin_dir = "$BIN"
log_level = "warning"

[[listeners]]
host = "127.0.0.1"
port = $port

[plugins.vault]
path = "libVaultPlugin.so"
required = true


TOML
export MELTYBASE_MASTER_KEY
MELTYBASE_MASTER_KEY="$(openssl rand -hex 32)"
note "starting meltybase on 127.0.0.1:$port (embedded Postgres and Redis in $TMP/data)"
(exec setsid "$BIN/meltybase" serve --config "$TMP/plugins.toml" --data-dir "$TMP/data") >"$TMP/server.log" 2>&1 </dev/null &
server_pid=$!
kernel="http://127.0.0.1:$port"
for _ in $(seq 1 450); do
  curl -sf -o /dev/null --max-time 2 "$kernel/v1/system/status" && break
  kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$TMP/server.log" >&2; die "meltybase exited (log above)"; }
  sleep 0.2
done
curl -sf -o /dev/null "$kernel/v1/system/status" || die "meltybase did not start (see $TMP/server.log)"

# The portal's service_role key, as `portal create` would have printed it.
"$BIN/meltybase" portal create bench --plugins vault --config "$TMP/plugins.toml" --data-dir "$TMP/data" >"$TMP/keys.txt"
key="$(awk '/service_role:/ {print $NF}' "$TMP/keys.txt")"
[[ -n $key ]] || die "portal create printed no service_role key: $(cat "$TMP/keys.txt")"
base="$kernel/p/bench/vault/v1/secrets"
for _ in $(seq 1 50); do
  status="$(curl -s -o "$TMP/create.json" -w '%{http_code}' -H "authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"name": "BENCH_KEY", "value": "sk_bench_0123456789abcdef0123456789abcdef"}' "$base")"
  [[ $status == 201 ]] && break
  sleep 0.2
done
[[ $status == 201 ]] || die "could not create the benchmark secret ($status: $(cat "$TMP/create.json"))"

cat >"$TMP/put.lua" <<'LUA'
wrk.method = "PUT"
wrk.body = '{"value": "sk_bench_0123456789abcdef0123456789abcdef"}'
wrk.headers["content-type"] = "application/json"
LUA
cat >"$TMP/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"value": "sk_bench_0123456789abcdef0123456789abcdef"}'
wrk.headers["content-type"] = "application/json"
LUA

declare -A rps=() p50=() p99=() non2xx=()
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u); f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : 0; printf "%.2f", n * f }'; }
measure() {
  local name=$1 url=$2 script=${3:-} out="$TMP/wrk-$1.txt" extra=()
  [[ -n $script ]] && extra=(-s "$script")
  if ((WARMUP > 0)); then wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -H "authorization: Bearer $key" "${extra[@]}" "$url" >/dev/null 2>&1 || true; fi
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "authorization: Bearer $key" "${extra[@]}" "$url" >"$out" 2>&1
  local total reqs bad
  total="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
  reqs="$(awk '/ requests in / {print $1}' "$out")"
  bad="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
  non2xx[$name]="${bad:-0}"
  rps[$name]="$(awk -v t="${total:-0}" -v r="${reqs:-0}" -v b="${bad:-0}" 'BEGIN { if (r > 0) printf "%.1f", t * (r - b) / r; else print "0" }')"
  p50[$name]="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
  p99[$name]="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
  ((${non2xx[$name]} == 0)) || note "warning: $url gave ${non2xx[$name]} non-2xx answers"
}
note "measuring through the gateway (${DURATION} s each, $CONNECTIONS connections)"
measure secret_get "$base/BENCH_KEY/value"
measure secret_meta "$base/BENCH_KEY"
measure echo_get "$kernel/v1/system/echo"
measure secret_put "$base/BENCH_KEY" "$TMP/put.lua"
measure echo_post "$kernel/v1/system/echo" "$TMP/post.lua"

# --- report --------------------------------------------------------------------

echo
echo "vault benchmark: $(nproc) cores, $(openssl version | awk '{print $1, $2}'), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
printf '%-10s %16s %16s %16s %16s\n' "bytes" "vault seal k/s" "openssl enc k/s" "vault open k/s" "openssl dec k/s"
for size in "${sizes[@]}"; do
  printf '%-10s %16s %16s %16s %16s\n' "$size" "${seal[$size]:-n/a}" "${ossl_enc[$size]:-n/a}" "${open[$size]:-n/a}" "${ossl_dec[$size]:-n/a}"
done
printf '\n%-44s %10s %8s %8s %8s\n' route "req/s" "p50 ms" "p99 ms" non-2xx
printf '%-44s %10s %8s %8s %8s\n' "vault GET .../BENCH_KEY/value" "${rps[secret_get]}" "${p50[secret_get]}" "${p99[secret_get]}" "${non2xx[secret_get]}"
printf '%-44s %10s %8s %8s %8s\n' "vault GET .../BENCH_KEY (metadata)" "${rps[secret_meta]}" "${p50[secret_meta]}" "${p99[secret_meta]}" "${non2xx[secret_meta]}"
printf '%-44s %10s %8s %8s %8s\n' "kernel GET /v1/system/echo" "${rps[echo_get]}" "${p50[echo_get]}" "${p99[echo_get]}" "${non2xx[echo_get]}"
printf '%-44s %10s %8s %8s %8s\n' "vault PUT .../BENCH_KEY" "${rps[secret_put]}" "${p50[secret_put]}" "${p99[secret_put]}" "${non2xx[secret_put]}"
printf '%-44s %10s %8s %8s %8s\n' "kernel POST /v1/system/echo" "${rps[echo_post]}" "${p50[echo_post]}" "${p99[echo_post]}" "${non2xx[echo_post]}"
echo
for size in "${sizes[@]}"; do
  echo "aes-256-gcm seal ${size} B: ours ${seal[$size]:-n/a}k B/s, peer openssl speed ${ossl_enc[$size]:-n/a}k B/s, ratio $(ratio "${seal[$size]:-0}" "${ossl_enc[$size]:-0}")"
  echo "aes-256-gcm open ${size} B: ours ${open[$size]:-n/a}k B/s, peer openssl speed -decrypt ${ossl_dec[$size]:-n/a}k B/s, ratio $(ratio "${open[$size]:-0}" "${ossl_dec[$size]:-0}")"
done
echo "secret get: ours ${rps[secret_get]} req/s, peer kernel echo ${rps[echo_get]} req/s, ratio $(ratio "${rps[secret_get]}" "${rps[echo_get]}")"
echo "secret metadata: ours ${rps[secret_meta]} req/s, peer kernel echo ${rps[echo_get]} req/s, ratio $(ratio "${rps[secret_meta]}" "${rps[echo_get]}")"
echo "secret put: ours ${rps[secret_put]} req/s, peer kernel echo ${rps[echo_post]} req/s, ratio $(ratio "${rps[secret_put]}" "${rps[echo_post]}")"
