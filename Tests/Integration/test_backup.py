"""Backups and point-in-time restore of the embedded Postgres, on the real binary.

- PITR: rows are inserted, a time T is noted, more rows are inserted and a table is
  dropped; `meltybase backup restore --to T --replace` and a kernel started on the
  restored cluster show exactly the rows committed before T and the table back. The
  kernel's own scheduled base backup appears soon after its first start, `backup list
  --json` describes backups and archive, and the restore is audited.
- kill -9 of the embedded Postgres while rows are written: after the supervisor's
  restart, a restore to a time after the kill holds every acknowledged row.
- a segment deleted from the archive is reported by `backup verify` (exit 1, its name).
- bad input (`--to` not a timestamp, a target before the oldest backup or after the
  archive, `backup create` without a running kernel, an external database) gives a clear
  error and a non-zero exit, never a crash.

- RPO: with `archive_timeout_seconds = 2` a commit's segment reaches the archive with
  nobody calling `pg_switch_wal()`, and a restore to a time just before it succeeds.

Elsewhere the archive is advanced with `pg_switch_wal()` through the superuser socket; no
test asserts elapsed time. Deadlines only bound waits for what must happen.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "database"))

import dbkit  # noqa: E402

WAIT = 120.0


RestartedKernel = dbkit.RestartedKernel


def start_kernel(extra_toml: str = "") -> dbkit.Kernel:
    try:
        return dbkit.Kernel(extra_toml)
    except dbkit.SetupError as error:
        pytest.fail(f"cannot start the kernel: {error}", pytrace=False)


def run_cli(kernel: dbkit.Kernel, *arguments: str, timeout: float = 300.0, stdin: str | None = None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    return subprocess.run(
        [str(kernel.binary), *arguments, "--config", str(kernel.config), "--data-dir", str(kernel.data_dir)],
        capture_output=True, text=True, timeout=timeout, env=environment, cwd=kernel.directory, input=stdin)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def refused(result: subprocess.CompletedProcess, *phrases: str) -> str:
    """A clean refusal: non-zero exit, `Error: ...` naming each phrase, no crash."""
    text = result.stdout + result.stderr
    assert result.returncode != 0, f"expected a refusal, got exit 0:\n{text}"
    assert "Fatal error" not in text and "Traceback" not in text and result.returncode < 128, text
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in:\n{text}"
    return text


def backups_json(kernel: dbkit.Kernel) -> dict:
    return json.loads(ok(run_cli(kernel, "backup", "list", "--json")))


def wal_directory(kernel: dbkit.Kernel) -> Path:
    return Path(backups_json(kernel)["archive"]["directory"])


def switch_and_wait_archived(kernel: dbkit.Kernel) -> str:
    """Closes the current WAL segment (after writing something, so there is one to close)
    and waits until the archive holds it (compressed: `<name>.gz`); its name."""
    kernel.superuser_sql("create table if not exists public.backup_test_tick (n int); insert into public.backup_test_tick values (1)")
    name = kernel.superuser_sql("select pg_walfile_name(pg_switch_wal())")
    archive = wal_directory(kernel)
    deadline = time.monotonic() + WAIT
    while not (archive / f"{name}.gz").exists():
        assert time.monotonic() < deadline, f"{name} was not archived into {archive} within {WAIT} s; log:\n{kernel.log_tail()}"
        time.sleep(0.2)
    return name


def database_now(kernel: dbkit.Kernel) -> str:
    """The server's clock (UTC), as `--to` takes it."""
    return kernel.superuser_sql("select to_char(clock_timestamp() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US')")


def wait_for_backups(kernel: dbkit.Kernel, count: int = 1) -> dict:
    deadline = time.monotonic() + WAIT
    while True:
        listing = backups_json(kernel)
        if len(listing["backups"]) >= count:
            return listing
        assert time.monotonic() < deadline, f"no base backup within {WAIT} s:\n{listing}\nlog:\n{kernel.log_tail()}"
        time.sleep(1)


def audit_actions(kernel: dbkit.Kernel) -> list[str]:
    return kernel.superuser_sql("select action from meltybase.audit_log order by seq", database="meltybase").split("\n")


def stop(kernel: dbkit.Kernel) -> None:
    code = kernel.stop()
    assert code in (0, -15), f"meltybase exited with {code}; log:\n{kernel.log_tail()}"


@pytest.fixture
def kernels():
    """Kernels a test started (several may share one folder); all stopped and checked at the end."""
    started: list[dbkit.Kernel] = []
    yield started
    failures = []
    for kernel in reversed(started):
        code = kernel.stop()
        if code not in (0, -15):
            failures.append(f"meltybase exited with {code}; log {kernel.log_path}:\n{kernel.log_tail()}")
        if "Fatal error:" in kernel.log_text():
            failures.append(f"the kernel log shows a crash; log {kernel.log_path}:\n{kernel.log_tail()}")
    if not failures:
        for kernel in started:
            kernel.cleanup()
    assert not failures, "\n".join(failures)


def test_point_in_time_restore_brings_back_exactly_the_rows_before_t(kernels):
    kernel = start_kernel("[backup]\nbase_backup_interval_hours = 24\n")  # the default, said so: dbkit turns the schedule off otherwise
    kernels.append(kernel)
    portal = kernel.create_portal("pitr")
    portal.sql("create table items (id int primary key, note text); create table notes (id int primary key, body text)")
    portal.sql("insert into items select g, 'before' from generate_series(1, 50) g; insert into notes values (1, 'keep me'), (2, 'me too')")

    # The kernel takes its first base backup soon after its first start, unasked.
    listing = wait_for_backups(kernel)
    assert listing["backups"][0]["trigger"] == "scheduled"
    portal.sql("insert into items select g, 'before' from generate_series(51, 100) g")
    time.sleep(1.0)
    target = database_now(kernel)
    time.sleep(1.0)
    portal.sql("insert into items select g, 'after' from generate_series(101, 150) g")
    portal.sql("drop table notes")
    assert portal.count("items") == 150
    switch_and_wait_archived(kernel)

    listing = backups_json(kernel)
    backup = listing["backups"][0]
    for key in ("name", "path", "start_time", "end_time", "start_lsn", "end_lsn", "start_wal", "end_wal", "size_bytes", "timeline"):
        assert key in backup, listing
    assert backup["size_bytes"] > 1_000_000 and Path(backup["path"]).is_dir()
    assert listing["archive"]["segments"] >= 1 and listing["archive"]["last_segment"] >= backup["start_wal"][:8]
    assert listing["restorable_from"] <= listing["restorable_until"]
    assert "backup.created" in audit_actions(kernel)
    verified = ok(run_cli(kernel, "backup", "verify"))
    assert "OK" in verified and "complete" in verified, verified

    # Bad input: clear refusals, nothing restored.
    refused(run_cli(kernel, "backup", "restore", "--to", "yesterday at noon"), "is not a timestamp")
    refused(run_cli(kernel, "backup", "restore", "--to", "2001-01-01 00:00:00"), "before the oldest base backup")
    refused(run_cli(kernel, "backup", "restore", "--to", "2999-01-01T00:00:00Z"), "after the end of the archive")
    refused(run_cli(kernel, "backup", "restore", "--to", target, "--replace", "--yes"), "running")

    # A restore beside the running kernel leaves it alone and says how to switch.
    restored = ok(run_cli(kernel, "backup", "restore", "--to", target))
    assert "To switch the kernel to it" in restored and "mv " in restored, restored
    assert portal.count("items") == 150

    stop(kernel)
    # Without --yes and without a "yes" on stdin nothing changes.
    refused(run_cli(kernel, "backup", "restore", "--to", target, "--replace", stdin="no\n"), "not confirmed")
    replaced = ok(run_cli(kernel, "backup", "restore", "--to", target, "--replace", "--yes"))
    assert "before-restore" in replaced, replaced
    cluster = kernel.postgres_cluster()
    assert list(cluster.parent.glob("postgres.before-restore-*")), replaced

    again = RestartedKernel(kernel)
    kernels.append(again)
    restarted_portal = dbkit.Portal(again, portal.name, portal.anon, portal.service)
    again.portals.append(restarted_portal)
    again._wait_for_portal(restarted_portal)
    rows = restarted_portal.sql_rows("select count(*), min(id), max(id), count(*) filter (where note = 'after') from items")
    assert [int(value) for value in rows[0]] == [100, 1, 100, 0]
    assert restarted_portal.sql_rows("select body from notes order by id") == [["keep me"], ["me too"]]

    # The restore done while nothing ran is audited once the kernel is back.
    deadline = time.monotonic() + WAIT
    while "backup.replaced" not in audit_actions(again):
        assert time.monotonic() < deadline, f"no backup.replaced audit entry; log:\n{again.log_tail()}"
        time.sleep(1)
    # The restored cluster archives again: a new segment reaches the archive.
    switch_and_wait_archived(again)


def test_committed_work_reaches_the_archive_within_archive_timeout_unasked(kernels):
    """The RPO: a commit's segment is archived without anyone calling pg_switch_wal().

    Postgres's own archive_timeout does not fire on every host (it never did on the
    machines this was built on), so the kernel closes the segment after a commit every
    archive_timeout_seconds. Without that, the rows below would wait until 16 MiB of WAL
    accumulated and the WAIT deadline would fail the test."""
    kernel = start_kernel("[backup]\nbase_backup_interval_hours = 0\narchive_timeout_seconds = 2\n")
    kernels.append(kernel)
    archive = wal_directory(kernel)

    def wait_until_last_commit_archived() -> None:
        segment = kernel.superuser_sql("select pg_walfile_name(pg_current_wal_lsn())")
        deadline = time.monotonic() + WAIT
        while not (archive / f"{segment}.gz").exists():
            assert time.monotonic() < deadline, f"{segment} (holding the last commit) was never archived; log:\n{kernel.log_tail()}"
            time.sleep(0.2)

    # On a freshly started cluster Postgres's own archive_timeout never switched here.
    portal = kernel.create_portal("rpo")
    portal.sql("create table rpo (id int primary key, phase text)")
    portal.sql("insert into rpo select g, 'first' from generate_series(1, 5) g")
    wait_until_last_commit_archived()

    ok(run_cli(kernel, "backup", "create"))
    portal.sql("insert into rpo select g, 'before' from generate_series(6, 10) g")
    time.sleep(1.0)
    target = database_now(kernel)
    time.sleep(1.0)
    portal.sql("insert into rpo select g, 'after' from generate_series(11, 20) g")
    wait_until_last_commit_archived()
    # The archive reaches past T, so a restore to T finds the commit that ends its replay.
    restored = ok(run_cli(kernel, "backup", "restore", "--to", target))
    assert "To switch the kernel to it" in restored, restored


def test_restore_after_kill_9_mid_write_keeps_committed_rows(kernels):
    kernel = start_kernel("[backup]\nbase_backup_interval_hours = 0\n")
    kernels.append(kernel)
    kernel.superuser_sql("create table public.writes (id int primary key)", database="meltybase")
    ok(run_cli(kernel, "backup", "create"))

    acknowledged: list[int] = []
    stop_writing = threading.Event()

    def writer():
        n = 0
        while not stop_writing.is_set():
            n += 1
            try:
                kernel.superuser_sql(f"insert into public.writes values ({n})", database="meltybase")
                acknowledged.append(n)
            except (dbkit.SetupError, subprocess.TimeoutExpired):
                pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while len(acknowledged) < 30:
        assert time.monotonic() < deadline and thread.is_alive(), "the writer made no progress"
        time.sleep(0.05)
    old_pid = kernel.postmaster_pid()
    assert old_pid
    os.kill(old_pid, signal.SIGKILL)
    time.sleep(0.5)
    stop_writing.set()
    thread.join(60)
    committed = list(acknowledged)
    deadline = time.monotonic() + WAIT
    while True:
        pid = kernel.postmaster_pid()
        if pid and pid != old_pid:
            try:
                kernel.superuser_sql("select 1")
                break
            except dbkit.SetupError:
                pass
        assert time.monotonic() < deadline, f"Postgres was not restarted; log:\n{kernel.log_tail()}"
        time.sleep(0.2)
    time.sleep(1.0)
    target = database_now(kernel)
    time.sleep(1.0)
    kernel.superuser_sql("delete from public.writes", database="meltybase")
    switch_and_wait_archived(kernel)
    ok(run_cli(kernel, "backup", "verify"))

    stop(kernel)
    ok(run_cli(kernel, "backup", "restore", "--to", target, "--replace", "--yes"))
    again = RestartedKernel(kernel)
    kernels.append(again)
    present = {int(value) for value in again.superuser_sql("select id from public.writes", database="meltybase").split()}
    missing = sorted(set(committed) - present)
    assert not missing, f"{len(missing)} acknowledged rows are missing after the restore: {missing[:20]}"


def test_verify_reports_a_gap_in_the_archive(kernels):
    kernel = start_kernel("[backup]\nbase_backup_interval_hours = 0\n")
    kernels.append(kernel)
    ok(run_cli(kernel, "backup", "create"))
    names = [switch_and_wait_archived(kernel) for _ in range(3)]
    assert "complete" in ok(run_cli(kernel, "backup", "verify"))
    archive = wal_directory(kernel)
    # Segments are archived gzip-compressed, and a segment switched with little written
    # (its tail zero-filled: wal_recycle = off) costs far less than its 16 MiB.
    for name in names:
        stored = archive / f"{name}.gz"
        assert not (archive / name).exists(), sorted(p.name for p in archive.iterdir())
        data = stored.read_bytes()
        assert data[:2] == b"\x1f\x8b" and int.from_bytes(data[-4:], "little") == 16 * 1024 * 1024, stored
        assert len(data) < 1024 * 1024, f"{stored}: {len(data)} bytes"
    (archive / f"{names[1]}.gz").unlink()
    result = run_cli(kernel, "backup", "verify")
    text = refused(result, "GAP", names[1])
    assert result.returncode == 1, text
    # A scheduled backup of 0 hours means none: the only backup is the one asked for.
    assert [backup["trigger"] for backup in backups_json(kernel)["backups"]] == ["manual"]


def test_cli_refusals_without_a_running_kernel():
    binary = dbkit.kernel_binary()
    with tempfile.TemporaryDirectory(prefix="meltybase-backup-it-") as folder:
        directory = Path(folder)
        os.chmod(directory, 0o755)
        config = directory / "meltybase.toml"
        config.write_text("[backup]\nkeep_count = 3\n")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}

        def cli(*arguments: str, config_path: Path = config):
            return subprocess.run([str(binary), *arguments, "--config", str(config_path), "--data-dir", str(directory / "data")],
                                  capture_output=True, text=True, timeout=120, env=environment, cwd=directory)

        refused(cli("backup", "create"), "not running", "meltybase serve")
        refused(cli("backup", "verify"), "no base backup")
        refused(cli("backup", "restore", "--to", "2026-13-45 00:00:00"), "is not a timestamp")
        refused(cli("backup", "restore", "--to", "2026-01-01 00:00:00"), "no base backup")
        listing = json.loads(ok(cli("backup", "list", "--json")))
        assert listing["backups"] == [] and listing["archive"]["segments"] == 0
        bad = directory / "bad.toml"
        bad.write_text("[backup]\nkeep_count = 0\n")
        refused(cli("backup", "list", config_path=bad), "backup.keep_count")
        external = directory / "external.toml"
        external.write_text("[database]\nurl = \"postgres://db.example/app\"\n")
        refused(cli("backup", "list", config_path=external), "pgBackRest")
