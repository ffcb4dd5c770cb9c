"""A clean Debian 12 (bookworm) root for tests that run MeltyBase without the Swift toolchain.

`cached_root()` makes a minbase root with debootstrap from http://deb.debian.org/debian
once, under <repo>/.build-debian-root/bookworm (git ignores `.build-*`), and reuses it:
a marker file `bookworm.ok` is written only after debootstrap succeeded, so an interrupted
run starts over. The first build's duration is in the marker (and `build_seconds`).

`DebianRoot(base)` is one test's throwaway view of that root: an overlayfs (the cached
root as the read-only lower layer) or, where overlayfs is unavailable or
DEBIAN_ROOT_COPY=1, a `cp -a` copy. Its pid 1 is `unshare --mount --pid --fork` +
chroot, with /proc, /dev (bind), /dev/pts (its own instance: apt logs through a pty),
/dev/shm (tmpfs: Postgres needs it), /sys (read-only)
and copies of /etc/resolv.conf and a minimal /etc/hosts. It shares the host's network
namespace, so the host reaches 127.0.0.1 ports served inside. `run()`/`popen()` enter it
with nsenter and a clean environment (no PATH or LD_LIBRARY_PATH of the host's Swift
toolchain). `close()` kills the pid namespace's init, which ends every process inside and
drops its mounts with the mount namespace, then removes the overlay's folders. Should the
test process die without closing (SIGKILL), the init dies with it (PR_SET_PDEATHSIG on
unshare, `unshare --kill-child`); only the overlay's folder stays behind in the cache.

`unavailable_reason()` says why such a root cannot be made here (not root, no debootstrap,
unshare or nsenter); the tests skip on it only then.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".build-debian-root"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
VIEW_PREFIX = "meltybase-debian-root-"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_ENV = {"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}


class RootError(RuntimeError):
    """The Debian root could not be made or entered (a setup problem, not a behaviour under test)."""


def unavailable_reason() -> str | None:
    """Why a Debian root cannot be made on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "making a Debian root (debootstrap, mount, chroot) needs root; run the test as root"
    for tool in ("debootstrap", "unshare", "nsenter", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (scripts/setup.sh --test installs debootstrap)"
    return None


def cached_root() -> tuple[Path, float | None]:
    """The cached bookworm minbase root, made now when missing: (its path, seconds debootstrap
    took when it ran in this call, else None)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / SUITE
    marker = CACHE / f"{SUITE}.ok"
    with open(CACHE / f"{SUITE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it
        if marker.exists() and (root / "usr" / "bin" / "apt-get").exists():
            return root, None
        partial = CACHE / f"{SUITE}.partial"
        for stale in (partial, root):
            if stale.exists():
                subprocess.run(["rm", "-rf", "--one-file-system", str(stale)], check=True)
        marker.unlink(missing_ok=True)
        started = time.monotonic()
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(partial), MIRROR],
            capture_output=True, text=True, timeout=1200)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise RootError(f"debootstrap --variant=minbase {SUITE} {partial} {MIRROR} failed "
                            f"({result.returncode}) after {seconds:.0f} s:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        partial.rename(root)
        marker.write_text(f"debootstrap --variant=minbase {SUITE} {MIRROR}\nseconds {seconds:.1f}\n")
        return root, seconds


def overlay_supported() -> bool:
    try:
        return any(line.split()[-1] == "overlay" for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


def _remove_stale_views() -> None:
    """Removes the folders of views whose test process died without closing them (nobody
    holds their lock any more)."""
    for folder in CACHE.glob(VIEW_PREFIX + "*"):
        try:
            with open(folder / "in-use.lock", "r+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                subprocess.run(["rm", "-rf", "--one-file-system", str(folder)], check=False)
        except (BlockingIOError, OSError):
            continue


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (even by SIGKILL), so
    unshare's --kill-child ends the namespace's init and, with it, everything inside."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class DebianRoot:
    """One test's private, disposable view of the cached root (see the module's doc)."""

    def __init__(self, base: Path, use_overlay: bool | None = None):
        if use_overlay is None:
            use_overlay = overlay_supported() and os.environ.get("DEBIAN_ROOT_COPY") != "1"
        self.base = base
        self.use_overlay = use_overlay
        _remove_stale_views()
        self.folder = Path(tempfile.mkdtemp(prefix=VIEW_PREFIX, dir=CACHE))
        self._lock = open(self.folder / "in-use.lock", "w")  # held while the view lives
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.merged = self.folder / "root"
        self.init: subprocess.Popen | None = None
        self.init_pid: int | None = None  # pid 1 of the namespace, as the host sees it
        self.prepare_seconds = 0.0
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        self.prepare_seconds = time.monotonic() - started

    # --- start and stop ---------------------------------------------------------------

    def _start(self) -> None:
        merged = self.merged
        if self.use_overlay:
            for name in ("upper", "work", "root"):
                (self.folder / name).mkdir()
            layer = (f"mount -t overlay overlay -o lowerdir={self.base},upperdir={self.folder / 'upper'},"
                     f"workdir={self.folder / 'work'} {merged}")
        else:
            subprocess.run(["cp", "-a", str(self.base), str(merged)], check=True)
            layer = ":"
        script = f"""set -e
{layer}
mount -t proc proc {merged}/proc
mount --bind /dev {merged}/dev
mount -t tmpfs -o mode=1777,size=1g shm {merged}/dev/shm
mkdir -p {merged}/dev/pts
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts {merged}/dev/pts
mount --bind {merged}/dev/pts/ptmx {merged}/dev/ptmx
mount --bind /sys {merged}/sys
mount -o remount,bind,ro {merged}/sys
cp -L /etc/resolv.conf {merged}/etc/resolv.conf
printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' > {merged}/etc/hosts
exec chroot {merged} /bin/sleep infinity
"""
        self.init = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--kill-child=SIGKILL", "--propagation", "private",
             "/bin/sh", "-c", script],
            env=CLEAN_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.init.poll() is not None:
                raise RootError(f"could not enter the Debian root ({self.init.returncode}):\n"
                                f"{self.init.stdout.read().decode(errors='replace')}")
            child = self.child_of(self.init.pid)
            if child is not None:
                self.init_pid = child
                try:
                    if (Path(f"/proc/{child}/comm").read_text().strip() == "sleep"
                            and os.readlink(f"/proc/{child}/root") == str(merged)):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RootError("the Debian root's init did not start within 30 s")

    @staticmethod
    def child_of(pid: int) -> int | None:
        """The first child of host pid `pid` (for nsenter: the process it started inside)."""
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def close(self) -> None:
        """Ends every process inside (SIGKILL to the namespace's init), drops the mounts with
        the namespace and removes the overlay's folders. Safe to call twice."""
        if self.init_pid is not None:
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.init is not None:
            if self.init.poll() is None:
                try:
                    self.init.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.init.pid, signal.SIGKILL)
                    self.init.wait(10)
            if self.init.stdout:
                self.init.stdout.close()
        # Processes that entered with nsenter leave when their namespace's init dies; the
        # mounts go with the last of them.
        deadline = time.monotonic() + 20
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._lock.close()
        if os.environ.get("KEEP_TMP"):
            return
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.folder)], check=False)

    # --- running commands inside ------------------------------------------------------

    def _enter(self, command: list[str], cwd: str) -> list[str]:
        if self.init_pid is None:
            raise RootError("the Debian root is not running")
        return ["nsenter", "--target", str(self.init_pid), "--mount", "--pid", "--root", "--wd",
                "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *command]

    def run(self, command: list[str], cwd: str = "/", timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Runs `command` inside as root with a clean environment; stdout and stderr as text."""
        return subprocess.run(self._enter(command, cwd), capture_output=True, text=True, timeout=timeout,
                              env={**CLEAN_ENV, **(env or {})}, stdin=subprocess.DEVNULL)

    def shell(self, script: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(["/bin/sh", "-c", script], **kwargs)

    def popen(self, command: list[str], cwd: str, log, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Starts `command` inside, stdout and stderr to the open file `log`."""
        return subprocess.Popen(self._enter(command, cwd), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**CLEAN_ENV, **(env or {})},
                                start_new_session=True)

    def host_path(self, inside: str) -> Path:
        """The host's path of `inside` (through the init's root: the overlay is mounted in
        the namespace only)."""
        if self.init_pid is None:
            raise RootError("the Debian root is not running")
        return Path(f"/proc/{self.init_pid}/root") / inside.lstrip("/")

    # --- processes --------------------------------------------------------------------

    def processes(self) -> list[int]:
        """Host pids of every process in the root's pid namespace (its init included)."""
        if self.init_pid is None:
            return []
        try:
            namespace = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        except OSError:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "pid") == namespace:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def find_process(self, *words: str) -> int | None:
        """Host pid of the first process inside whose command line holds every word."""
        for pid in sorted(self.processes()):
            try:
                arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            line = " ".join(a.decode(errors="replace") for a in arguments)
            if all(word in line for word in words):
                return pid
        return None

    def memory(self) -> tuple[int, int, dict[str, int]]:
        """Memory of every process inside in KiB: summed VmRSS (shared pages such as Postgres'
        shared buffers count once per process), summed Pss (shared pages split between their
        users: what the stack really holds) and the VmRSS sum per process name."""
        rss_total = pss_total = 0
        by_name: dict[str, int] = {}
        for pid in self.processes():
            try:
                fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                              if ":" in line)
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            rss = int(fields.get("VmRSS", "0 kB").split()[0])
            pss = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
            name = fields.get("Name", "?").strip()
            rss_total += rss
            pss_total += int(pss.group(1)) if pss else rss
            by_name[name] = by_name.get(name, 0) + rss
        return rss_total, pss_total, by_name
