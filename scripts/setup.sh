#!/usr/bin/env bash
# Installs what MeltyBase needs on Debian 12, starting from a machine that has
# only the Swift toolchain, git and python3:
#   - system packages through apt (C libraries the kernel links, Postgres 15
#     and Redis for the embedded mode, python3-venv),
#   - a Python environment in <repo>/.venv with deno and the test clients
#     from scripts/requirements.txt (Debian's own pip refuses installs: PEP 668).
#
# Idempotent: apt runs only when dpkg shows a package missing, pip only when
# requirements.txt changed since the last successful install. A second run
# takes about a second and installs nothing. Starts no service.
#
# usage: scripts/setup.sh [--test] [--bench]
#   --test   also the tools the test suites use (wrk, nginx, hyperfine,
#            chromium + chromedriver, oathtool, haproxy, debootstrap, zip)
#   --bench  also the benchmark peers (wrk, nginx, hyperfine, pgbench)
# env:     PYTHON=/path/to/python3 picks the interpreter for a new .venv
#          (default: Debian's /usr/bin/python3 when present).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/scripts/requirements.txt"
STAMP="$VENV/.requirements.sha256"

# Debian 12 package names (checked with apt-cache policy).
# postgresql-contrib is Debian's metapackage for the contrib modules;
# "postgresql-contrib-15" is only a virtual name provided by postgresql-15.
BASE_PACKAGES=(
  pkg-config libpq-dev libhiredis-dev libsodium-dev libargon2-dev libssl-dev
  postgresql-15 postgresql-contrib redis-server redis-tools
  python3-venv ca-certificates curl openssl
  # What swift build needs to link and to compile the C plugins; present
  # wherever the Swift toolchain already works, so normally a no-op.
  gcc libc6-dev libstdc++-12-dev binutils tzdata
  # The Knowledge Mesh's HNSW index (header-only C++, compiled into the Intelligence plugin).
  libhnswlib-dev
)
# nginx-light is only a transitional package in Debian 12 (nginx plus the
# echo module); nginx is the real one.
# haproxy: the many-kernels test (deploy/); debootstrap, zip, unzip: the release package
# test, which unpacks the package in a fresh Debian 12 root without the Swift toolchain;
# patchelf: scripts/package sets the binaries' rpath to $ORIGIN/lib.
TEST_PACKAGES=(wrk nginx hyperfine chromium chromium-driver oathtool haproxy debootstrap zip unzip patchelf)
# pgbench ships in postgresql-15 (already in the base set).
BENCH_PACKAGES=(wrk nginx hyperfine postgresql-contrib)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

with_test=0
with_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    --bench) with_bench=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$arg' (expected --test and/or --bench)" ;;
  esac
done

started=$SECONDS
LOG="$(mktemp "${TMPDIR:-/tmp}/meltybase-setup.XXXXXX.log")"
trap 'rm -f "$LOG"' EXIT

# Prints the log of a failed step and stops.
fail_with_log() {
  printf 'setup: --- last lines of the log ---\n' >&2
  tail -n 40 "$LOG" >&2 || true
  die "$1"
}

# Two setups at once (say scripts/test and scripts/run) would race on .venv.
exec 9>"${TMPDIR:-/tmp}/meltybase-setup.$(id -u).lock"
flock 9

# --- system packages ---------------------------------------------------------

packages=("${BASE_PACKAGES[@]}")
groups="base"
if ((with_test)); then packages+=("${TEST_PACKAGES[@]}"); groups+="+test"; fi
if ((with_bench)); then packages+=("${BENCH_PACKAGES[@]}"); groups+="+bench"; fi
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | awk '!seen[$0]++')

command -v dpkg-query >/dev/null || die "dpkg-query not found: this script supports Debian 12 only; install by hand: ${packages[*]}"

# Installed means dpkg state "installed" (second letter i), not merely known
# (a removed package keeps its config files and still shows in dpkg-query -W).
declare -A installed=()
while IFS=$'\t' read -r state name; do
  [[ ${state:1:1} == i ]] && installed[$name]=1
done < <(dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\n' "${packages[@]}" 2>/dev/null || true)

missing=()
for p in "${packages[@]}"; do
  [[ -n ${installed[$p]:-} ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  say "apt: all ${#packages[@]} packages ($groups) already installed"
else
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    # Without a terminal (CI) sudo must not wait for a password it cannot get.
    if [[ -t 0 ]]; then
      as_root=(sudo)
    else
      as_root=(sudo -n)
      sudo -n true 2>/dev/null ||
        die "sudo needs a password and there is no terminal to ask for it; run from a terminal, or as root: apt-get update && apt-get install -y ${missing[*]}"
    fi
  else
    die "not root and no sudo; as root run: apt-get update && apt-get install -y ${missing[*]}"
  fi
  apt_get=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
    -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  say "apt: installing ${#missing[@]} missing packages: ${missing[*]} (can take a few minutes)"
  # A stale or empty package list makes install fail, so refresh it first;
  # a mirror hiccup during update is not fatal if install still succeeds.
  "${apt_get[@]}" update >>"$LOG" 2>&1 || say "apt: warning: apt-get update reported errors, trying install anyway"
  "${apt_get[@]}" install "${missing[@]}" >>"$LOG" 2>&1 || fail_with_log "apt-get install ${missing[*]} failed"
  # Debian's postgresql package creates (and, where systemd runs, starts) a
  # cluster 15/main on port 5432. MeltyBase does not use it and leaves it be.
  say "apt: installed ${missing[*]}"
fi

# --- Python environment ------------------------------------------------------

python="${PYTHON:-}"
if [[ -z $python ]]; then
  if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; else python=python3; fi
fi

venv_usable() {
  [[ -x $VENV/bin/python && -x $VENV/bin/pip ]] || return 1
  "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 || return 1
  # A stamp promises deno: if deno broke since, start the environment over.
  if [[ -f $STAMP ]]; then "$VENV/bin/deno" --version >/dev/null 2>&1 || return 1; fi
}

if venv_usable; then
  say "python: .venv ok ($("$VENV/bin/python" -V 2>&1))"
else
  # Missing, or half-made (say, created before python3-venv was installed).
  rm -rf "$VENV"
  "$python" -m venv "$VENV" >>"$LOG" 2>&1 || fail_with_log "'$python -m venv $VENV' failed"
  say "python: created .venv ($("$VENV/bin/python" -V 2>&1), from $python)"
fi

want_sha="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
have_sha="$(cat "$STAMP" 2>/dev/null || true)"
if [[ $want_sha == "$have_sha" ]]; then
  say "pip: scripts/requirements.txt unchanged, nothing to install"
else
  say "pip: installing scripts/requirements.txt into .venv (about a minute)"
  rm -f "$STAMP"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS" >>"$LOG" 2>&1 ||
    fail_with_log "pip install -r scripts/requirements.txt failed"
  "$VENV/bin/deno" --version >>"$LOG" 2>&1 ||
    fail_with_log "pip installed the requirements but .venv/bin/deno does not run"
  printf '%s\n' "$want_sha" >"$STAMP"
  say "pip: installed"
fi

deno_version="$("$VENV/bin/deno" --version 2>/dev/null | head -n 1)" ||
  die ".venv/bin/deno does not run; delete .venv and run scripts/setup.sh again"
say "deno: $deno_version (.venv/bin/deno)"

say "done in $((SECONDS - started)) s"
