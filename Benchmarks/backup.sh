#!/usr/bin/env bash
# Base backup, restore and WAL replay throughput of the embedded cluster, in one run on
# one cluster: `meltybase backup create` vs a raw `pg_basebackup` (same options) vs a plain
# `cp -a` of the cluster folder; `meltybase backup restore` end to end; WAL replay per GiB.
#
#   Benchmarks/backup.sh [SCALE]      (pgbench scale, default 20 = about 320 MB; at most 300)
#
# Environment: BIN (folder of meltybase, default .build/release), RUNS (rounds of the
# three copies, default 3; the median is reported), WAL_SECONDS (pgbench write load
# replayed by the restore, default 20), TMP_PARENT (default /tmp).
#
# Starts `meltybase serve` on a temporary data directory with [backup] on and no
# schedule, fills it with `pgbench -i -s SCALE`, then per round takes the three copies in
# turn (warm page cache for all three: the figures compare the tools, not the disk). Then
# runs pgbench -T WAL_SECONDS against it, switches and archives the WAL, and restores to
# a time after the load: the restore's log gives the replay time ("redo done ... elapsed").
set -euo pipefail

scale="${1:-20}"
((scale >= 1 && scale <= 300)) || { echo "error: SCALE must be 1..300" >&2; exit 1; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../scripts/env.sh
. "$root/scripts/env.sh"
NAME=backup-bench
BIN="${BIN:-$root/.build/release}"
[[ -x $BIN/meltybase ]] || { echo "error: $BIN/meltybase not found: swift build -c release, or set BIN" >&2; exit 1; }
runs="${RUNS:-3}"
wal_seconds="${WAL_SECONDS:-20}"
TMP="$(mktemp -d "${TMP_PARENT:-/tmp}/meltybase-backup-bench-XXXXXX")"
chmod 755 "$TMP"
# shellcheck source=kernel-lib.sh
. "$root/Benchmarks/kernel-lib.sh"
cleanup() {
  kernel_cleanup
  if [[ -z ${KEEP_TMP:-} ]]; then rm -rf "$TMP"; else note "kept $TMP"; fi
}
trap cleanup EXIT

pgbin="$(dirname "$(command -v pg_basebackup)")"
as_postgres=()
if [[ $(id -u) == 0 ]]; then
  account=postgres
  id "$account" >/dev/null 2>&1 || account=meltybase
  as_postgres=(setpriv --reuid="$(id -u "$account")" --regid="$(id -g "$account")" --init-groups --)
fi

kernel_start "$(free_port)" $'[backup]\nbase_backup_interval_hours = 0'
socket="$(postgres_socket_dir)"
cluster="$(dirname "$socket")/postgres"
psql_q() { psql -h "$socket" -U meltybase -d meltybase -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
seconds() { # seconds COMMAND...: wall time of the command, in seconds
  local start end
  start=$(date +%s.%N)
  "$@" >"$TMP/last.out" 2>&1 || { cat "$TMP/last.out" >&2; die "failed: $*"; }
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}

note "pgbench -i -s $scale into the embedded cluster"
pgbench -i -s "$scale" -q -h "$socket" -U meltybase meltybase >"$TMP/pgbench-init.log" 2>&1 || { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_q "CHECKPOINT" >/dev/null
cluster_bytes=$(du -sb "$cluster" | cut -f1)
note "cluster $cluster: $((cluster_bytes / 1048576)) MiB"

mkdir -p "$TMP/raw" "$TMP/copy"
chown "${account:-$(id -un)}" "$TMP/raw" 2>/dev/null || true
create_times=() raw_times=() copy_times=()
for ((round = 1; round <= runs; round++)); do
  create_times+=("$(seconds meltybase_cli backup create)")
  raw_times+=("$(seconds "${as_postgres[@]}" "$pgbin/pg_basebackup" -D "$TMP/raw/$round" -Fp -X stream --checkpoint=fast \
    --manifest-checksums=CRC32C -h "$socket" -p 5432 -U meltybase --no-password)")
  copy_times+=("$(seconds cp -a "$cluster" "$TMP/copy/$round")")
  note "round $round: backup create ${create_times[-1]} s, pg_basebackup ${raw_times[-1]} s, cp -a ${copy_times[-1]} s"
  rm -rf "$TMP/raw/$round" "$TMP/copy/$round"
done
create_s=$(printf '%s\n' "${create_times[@]}" | median)
raw_s=$(printf '%s\n' "${raw_times[@]}" | median)
copy_s=$(printf '%s\n' "${copy_times[@]}" | median)
backup_bytes=$(meltybase_cli backup list --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["backups"][0]["size_bytes"])')

note "pgbench write load for $wal_seconds s (WAL to replay)"
lsn_start=$(psql_q "SELECT pg_current_wal_lsn()")
pgbench -T "$wal_seconds" -c 4 -j 2 -h "$socket" -U meltybase meltybase >"$TMP/pgbench-run.log" 2>&1 || { cat "$TMP/pgbench-run.log" >&2; die "pgbench failed"; }
lsn_end=$(psql_q "SELECT pg_current_wal_lsn()")
wal_bytes=$(psql_q "SELECT pg_wal_lsn_diff('$lsn_end', '$lsn_start')::bigint")
sleep 1
target=$(psql_q "SELECT to_char(clock_timestamp() AT TIME ZONE 'utc', 'YYYY-MM-DD HH24:MI:SS.US')")
sleep 1
# Recovery stops at the first commit after the target, so one must be archived.
psql_q "CREATE TABLE IF NOT EXISTS bench_tick (n int); INSERT INTO bench_tick VALUES (1)" >/dev/null
last=$(psql_q "SELECT pg_walfile_name(pg_switch_wal())")
archive="$(meltybase_cli backup list --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["archive"]["directory"])')"
# Archived compressed ($last.gz); an archive from before compression holds $last.
archived() { [[ -f $archive/$last.gz || -f $archive/$last ]]; }
for ((i = 0; i < 1200; i++)); do archived && break; sleep 0.1; done
archived || die "$last was not archived"
restore_s=$(seconds meltybase_cli backup restore --to "$target" --into "$TMP/restored")
replay_s=$(grep -o 'redo done at .*elapsed: [0-9.]* s' "$TMP/restored.restore.log" | grep -o 'elapsed: [0-9.]*' | awk '{ print $2 }' | tail -n 1)
[[ -n $replay_s ]] || replay_s=n/a

mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / 1048576 / s; else print "n/a" }'; }
per_gib=$(awk -v s="$replay_s" -v b="$wal_bytes" 'BEGIN { if (s != "n/a" && b > 0) printf "%.1f", s / (b / 1073741824); else print "n/a" }')
cat <<REPORT

backup benchmark: pgbench scale $scale, cluster $(mib "$cluster_bytes") MiB, base backup $(mib "$backup_bytes") MiB, median of $runs rounds
  meltybase backup create   $create_s s   $(rate "$backup_bytes" "$create_s") MiB/s
  raw pg_basebackup         $raw_s s   $(rate "$backup_bytes" "$raw_s") MiB/s
  cp -a of the cluster      $copy_s s   $(rate "$cluster_bytes" "$copy_s") MiB/s
  ratio create / pg_basebackup  $(ratio "$create_s" "$raw_s")
  ratio create / cp -a          $(ratio "$create_s" "$copy_s")
  restore (copy + replay $(mib "$wal_bytes") MiB WAL + check)  $restore_s s
  ratio restore / cp -a         $(ratio "$restore_s" "$copy_s")
  WAL replay                $replay_s s for $(mib "$wal_bytes") MiB = $per_gib s per GiB
REPORT
