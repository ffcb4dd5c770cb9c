#!/usr/bin/env bash
# The Knowledge Mesh's vector index against its peers (issue: HNSW index, Done-when):
# recall@10 and single-thread queries per second of
#   meltybase  the in-process VectorIndex (bench-vectors, release build; hnswlib 0.6.2
#              through the CHNSW shim, its own search loop and distance kernels)
#   hnswlib    hnswlib 0.8.0 from PyPI (compiled here by pip, -march=native)
#   faiss      faiss-cpu from PyPI, IndexHNSWFlat
# on the same vectors in the same run: SIZES base vectors of dimension 128 (clustered
# Gaussian, fixed seed), 1,000 queries, ground truth by exact brute force (numpy, float64).
# All three use M=16, efConstruction=200 and the same ef sweep; builds and searches are
# single-threaded. The libraries run in alternating ROUNDS (meltybase, hnswlib, faiss,
# meltybase, ...), each round REPEATS query passes per ef; the report takes the median over
# all passes and picks the smallest ef where meltybase and hnswlib both reach recall@10 >=
# 0.95, with the QPS ratio against hnswlib (goal: >= 0.9x).
# Then the HTTP API on the same files: a kernel (BIN) with the Database, Vault and
# Intelligence plugins, one portal, one l2 collection per size loaded by upserts of
# 1,000 entries (id = row number), and per ef every query through
# POST /p/<portal>/vectors/v1/collections/<c>/query: one client sequentially (latency-bound)
# and CLIENTS concurrent clients (threads, one keep-alive connection each); recall@10 against
# the same ground truth and QPS, reported beside the in-process index and hnswlib.
# A benchmark, not a test: it asserts no timing; it exits non-zero only when something
# could not be measured.
#
# usage: Benchmarks/vectors.sh
# env:   SIZES="10000 100000"  base vector counts
#        EFS=10,16,24,32,48,64,96,128  the ef sweep
#        ROUNDS=3                alternating rounds per size
#        REPEATS=3               query passes per ef per round
#        DATA=<dir>              where the vectors go (default .build/vector-bench)
#        HTTP=0                  skip the HTTP API's measurement
#        BIN=<dir>               folder with meltybase, libDatabasePlugin.so, libVaultPlugin.so
#                                and libIntelligencePlugin.so (default .build/release when it
#                                holds all four, else .build/debug; never builds them)
#        CLIENTS=8               the concurrent client count of the HTTP API's second series
#        HTTP_REPEATS=1          query passes per ef and client count over HTTP
#        KEEP_TMP=1              keep the kernel's temp folder (config, log)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="${SIZES:-10000 100000}"
EFS="${EFS:-10,16,24,32,48,64,96,128}"
ROUNDS="${ROUNDS:-3}"
REPEATS="${REPEATS:-3}"
DATA="${DATA:-$ROOT/.build/vector-bench}"
HTTP="${HTTP:-1}"
CLIENTS="${CLIENTS:-8}"
HTTP_REPEATS="${HTTP_REPEATS:-1}"
DIMENSION=128
QUERIES=1000
K=10

NAME=vectors
# die, note (shared with the other benchmarks).
# shellcheck source=kernel-lib.sh
source "$ROOT/Benchmarks/kernel-lib.sh"
# shellcheck source=../scripts/env.sh
source "$ROOT/scripts/env.sh"
for n in $SIZES "$ROUNDS" "$REPEATS" "$CLIENTS" "$HTTP_REPEATS"; do
  [[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || die "SIZES, ROUNDS, REPEATS, CLIENTS and HTTP_REPEATS take positive whole numbers (got '$n')"
done
[[ $EFS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "EFS takes comma-separated whole numbers (got '$EFS')"

PYTHON="$ROOT/.venv/bin/python"
PEERS="$ROOT/Benchmarks/vectors_peers.py"
[[ -x $PYTHON ]] || die "no $PYTHON: run scripts/setup.sh first"

# --- Peers: numpy, hnswlib 0.8.0 (an sdist pip compiles), faiss-cpu -------------------
if ! "$PYTHON" -c 'import numpy, hnswlib, faiss' 2>/dev/null; then
  note "installing the peers into .venv from Benchmarks/requirements-vectors.txt"
  "$PYTHON" -m pip install --quiet -r "$ROOT/Benchmarks/requirements-vectors.txt" || die "pip install failed"
fi

# --- Ours: the release build of bench-vectors ------------------------------------------
note "building bench-vectors (release)"
(cd "$ROOT" && swift build -c release --product bench-vectors 2>&1 | tail -1) >&2
BENCH="$ROOT/.build/release/bench-vectors"
[[ -x $BENCH ]] || die "no $BENCH after the build"

# --- The HTTP API's kernel: release if it is complete, else debug (not built here) ------
KERNEL_FILES=(meltybase libDatabasePlugin.so libVaultPlugin.so libIntelligencePlugin.so)
has_kernel() { local file; for file in "${KERNEL_FILES[@]}"; do [[ -e $1/$file ]] || return 1; done; }
if [[ $HTTP != 0 ]]; then
  if [[ -z ${BIN:-} ]]; then
    BIN="$ROOT/.build/release"
    if ! has_kernel "$BIN"; then
      note "no complete release kernel in .build/release (${KERNEL_FILES[*]}): the HTTP API runs on .build/debug"
      BIN="$ROOT/.build/debug"
    fi
  fi
  BIN="$(cd "$BIN" 2>/dev/null && pwd)" || die "no folder BIN=$BIN"
  has_kernel "$BIN" || die "BIN=$BIN lacks one of ${KERNEL_FILES[*]} (swift build --product meltybase --product DatabasePlugin --product VaultPlugin --product IntelligencePlugin)"
  case "$BIN" in
    */release) KERNEL_BUILD=release ;;
    */debug) KERNEL_BUILD=debug ;;
    *) KERNEL_BUILD="$(basename "$BIN")" ;;
  esac
  note "HTTP API: kernel from $BIN ($KERNEL_BUILD build)"
  command -v curl >/dev/null || die "curl not found"
  command -v setsid >/dev/null || die "setsid not found"
fi
TMP=""
# shellcheck disable=SC2317 # reached through the traps
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  kernel_cleanup
  if [[ -n $TMP ]]; then
    if [[ -n ${KEEP_TMP:-} ]]; then note "kept $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RESULTS="$DATA/results.jsonl"
mkdir -p "$DATA"
: >"$RESULTS"
note "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

for n in $SIZES; do
  dir="$DATA/$n"
  note "generating $n x $DIMENSION base vectors, $QUERIES queries and the exact top-$K"
  "$PYTHON" "$PEERS" generate --n "$n" --dimension "$DIMENSION" --queries "$QUERIES" --k "$K" --seed 42 --out "$dir" >&2
  files=(--base "$dir/base.f32" --queries "$dir/queries.f32" --truth "$dir/truth.i64" --dimension "$DIMENSION" --k "$K")
  for round in $(seq 1 "$ROUNDS"); do
    note "size $n, round $round/$ROUNDS: meltybase"
    "$BENCH" "${files[@]}" --m 16 --ef-construction 200 --efs "$EFS" --repeats "$REPEATS" | tee -a "$RESULTS" >&2
    for library in hnswlib faiss; do
      note "size $n, round $round/$ROUNDS: $library"
      "$PYTHON" "$PEERS" run --library "$library" "${files[@]}" --m 16 --ef-construction 200 --efs "$EFS" \
        --repeats "$REPEATS" | tee -a "$RESULTS" >&2
    done
  done
done

# --- HTTP API -----------------------------------------------------------------------------
# The same files through POST /p/bench/vectors/v1/collections/<c>/query of a running kernel.
# The bodies of 1,000 entries of 128 numbers (~2.6 MB of JSON) exceed the default 2 MiB
# body limit: raised here, as are the rate limits (measure the load, do not refuse it).
if [[ $HTTP != 0 ]]; then
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/meltybase-vectors.XXXXXX")"
  chmod 755 "$TMP"
  openssl rand -hex 32 >"$TMP/vault-master.key"
  chmod 600 "$TMP/vault-master.key"
  kernel_start "$(free_port)" "[kernel]
body_limit_bytes = 16777216

[backup]
base_backup_interval_hours = 0

[rate_limit]
per_client = { rate = 10000000, burst = 100000000 }
per_portal = { rate = 10000000, burst = 100000000 }

[plugins.database]
path = \"libDatabasePlugin.so\"

[plugins.vault]
path = \"libVaultPlugin.so\"

[plugins.vault.config]
master_key_file = \"$TMP/vault-master.key\"

[plugins.intelligence]
path = \"libIntelligencePlugin.so\"

# Room for 100k x 128-d (entries x (4 x dimension + 200) bytes ~ 71 MB); no snapshot
# written while measuring (one is written at shutdown).
[plugins.intelligence.config]
index_memory_mb = 4096
snapshot_delay_ms = 600000"
  portal_create bench database vault intelligence
  for n in $SIZES; do
    dir="$DATA/$n"
    note "size $n: the HTTP API ($KERNEL_BUILD kernel): upserting, then 1 and $CLIENTS clients per ef"
    "$PYTHON" "$PEERS" http --url "$kernel/p/bench/vectors/v1" --key "$service" --base "$dir/base.f32" \
      --queries "$dir/queries.f32" --truth "$dir/truth.i64" --dimension "$DIMENSION" --k "$K" --efs "$EFS" \
      --clients "1,$CLIENTS" --repeats "$HTTP_REPEATS" --build "$KERNEL_BUILD" | tee -a "$RESULTS" >&2 ||
      { tail -n 30 "$TMP/server.log" >&2; die "the HTTP API's measurement of size $n failed (kernel log above)"; }
  done
  kernel_cleanup
else
  note "HTTP API: not measured (HTTP=0)"
fi

"$PYTHON" "$PEERS" report --results "$RESULTS" --target 0.95
