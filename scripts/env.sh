# Sourced by the other scripts (and by hand: `. scripts/env.sh`): puts the
# project's tools on PATH. Exports nothing else; setup.sh installs the tools.
#   <repo>/.venv/bin   deno, python, pytest
#   Postgres bindir    initdb, postgres, pg_ctl, pgbench (not on PATH on Debian)
# Safe to source more than once and under `set -u`.

_meltybase_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"

_meltybase_pg_bindir=""
if command -v pg_config >/dev/null 2>&1; then
  _meltybase_pg_bindir="$(pg_config --bindir 2>/dev/null || true)"
fi
if [ -z "$_meltybase_pg_bindir" ] || [ ! -x "$_meltybase_pg_bindir/postgres" ]; then
  _meltybase_pg_bindir=/usr/lib/postgresql/15/bin
fi

for _meltybase_dir in "$_meltybase_pg_bindir" "$_meltybase_root/.venv/bin"; do
  case ":${PATH:-}:" in
    *":$_meltybase_dir:"*) ;;
    *) if [ -d "$_meltybase_dir" ]; then PATH="$_meltybase_dir:${PATH:-}"; fi ;;
  esac
done
export PATH
unset _meltybase_root _meltybase_pg_bindir _meltybase_dir
