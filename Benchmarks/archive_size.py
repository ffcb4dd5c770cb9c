#!/usr/bin/env python3
"""Size of the WAL archive of an idle kernel: starts a kernel (Tests/Integration/database/
dbkit.py) with [backup] archive_timeout_seconds = $TIMEOUT (default 10) and no scheduled
base backup, waits 15 s, then sums the segments archived during $SECONDS_IDLE (default
180) seconds: their stored (.gz) size and their decompressed size (the 16 MiB files an
uncompressed archive holds). With $WRITE_EVERY (seconds), one small row is inserted that
often (a trickle of writes: every archive_timeout then closes a segment). Prints one JSON line.

    TIMEOUT=10 MELTYBASE_BIN=.build/debug/meltybase .venv/bin/python Benchmarks/archive_size.py
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests/Integration/database"))
import dbkit  # noqa: E402

timeout = int(os.environ.get("TIMEOUT", "10"))
idle = int(os.environ.get("SECONDS_IDLE", "180"))
write_every = float(os.environ.get("WRITE_EVERY", "0"))
kernel = dbkit.Kernel(f"[backup]\nbase_backup_interval_hours = 0\narchive_timeout_seconds = {timeout}\n")
try:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    listing = subprocess.run(
        [str(kernel.binary), "backup", "list", "--json", "--config", str(kernel.config), "--data-dir", str(kernel.data_dir)],
        capture_output=True, text=True, env=environment, cwd=kernel.directory, check=True)
    archive = Path(json.loads(listing.stdout)["archive"]["directory"])
    time.sleep(15)
    before = {path.name for path in archive.iterdir()}
    started = time.time()
    if write_every > 0:
        kernel.superuser_sql("create table if not exists public.archive_size_tick (at timestamptz)")
        while time.time() - started < idle:
            kernel.superuser_sql("insert into public.archive_size_tick values (now())")
            time.sleep(min(write_every, max(0.0, idle - (time.time() - started))))
    else:
        time.sleep(idle)
    elapsed = time.time() - started
    files = [p for p in archive.iterdir() if p.name not in before and p.name.endswith(".gz") and len(p.name) == 27]
    stored = sum(p.stat().st_size for p in files)
    raw = sum(len(subprocess.run(["gzip", "-dc", str(p)], capture_output=True, check=True).stdout) for p in files)
    print(json.dumps({
        "archive_timeout_seconds": timeout, "write_every": write_every, "seconds": round(elapsed), "segments": len(files),
        "stored_bytes": stored, "uncompressed_bytes": raw, "sizes": sorted(p.stat().st_size for p in files),
        "per_day_stored_MiB": round(stored / elapsed * 86400 / 2**20, 1),
        "per_day_uncompressed_GiB": round(raw / elapsed * 86400 / 2**30, 2),
    }))
finally:
    kernel.stop()
