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
# A benchmark, not a test: it asserts no timing; it exits non-zero only when something
# could not be measured.
#
# usage: Benchmarks/vectors.sh
# env:   SIZES="10000 100000"  base vector counts
#        EFS=10,16,24,32,48,64,96,128  the ef sweep
#        ROUNDS=3                alternating rounds per size
#        REPEATS=3               query passes per ef per round
#        DATA=<dir>              where the vectors go (default .build/vector-bench)
#        HTTP_BENCH=<script>     the HTTP API's measurement (see "HTTP API" below)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="${SIZES:-10000 100000}"
EFS="${EFS:-10,16,24,32,48,64,96,128}"
ROUNDS="${ROUNDS:-3}"
REPEATS="${REPEATS:-3}"
DATA="${DATA:-$ROOT/.build/vector-bench}"
DIMENSION=128
QUERIES=1000
K=10

NAME=vectors
# die, note (shared with the other benchmarks).
# shellcheck source=kernel-lib.sh
source "$ROOT/Benchmarks/kernel-lib.sh"
# shellcheck source=../scripts/env.sh
source "$ROOT/scripts/env.sh"
for n in $SIZES "$ROUNDS" "$REPEATS"; do
  [[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || die "SIZES, ROUNDS and REPEATS take positive whole numbers (got '$n')"
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
# The QPS of POST /v1/vectors/collections/<name>/search through the kernel is measured by the
# HTTP part's own script: set HTTP_BENCH to it. It is called as
#   $HTTP_BENCH <data dir> <results.jsonl>
# with the same generated vectors under <data dir>/<size>/, and appends JSON lines of this
# script's shape ({"library": "http", "n", "ef", "recall", "qps", ...}) to the results, so
# the report below shows them next to the in-process figures.
if [[ -n ${HTTP_BENCH:-} ]]; then
  [[ -x $HTTP_BENCH ]] || die "HTTP_BENCH=$HTTP_BENCH is not executable"
  note "HTTP API: $HTTP_BENCH"
  "$HTTP_BENCH" "$DATA" "$RESULTS" >&2
else
  note "HTTP API: not measured (set HTTP_BENCH to the routes' benchmark script)"
fi

"$PYTHON" "$PEERS" report --results "$RESULTS" --target 0.95
