"""`meltybase serve` as a supervisor, on the real binary: the kernel runs as a worker
process; killing it costs a restart, not the platform, and nothing is left behind.

- kill -9 of the worker: a new worker serves on the same listening socket with the same
  embedded Postgres (same postmaster pid) and Redis; SIGTERM to the supervisor then
  leaves no Postgres or redis-server of the data directory.
- kill -9 of the supervisor: the worker exits (lifeline pipe), the watchdog stops
  Postgres and Redis, and a new `serve` on the same data directory starts cleanly.
- a C plugin that traps: the worker dies of SIGILL, the supervisor names the plugin from
  the crash report and the next request is served again.
- `meltybase portal list` finds the supervisor's Postgres through the data-dir lock.

Deadlines below only bound waits for something that must happen; no test asserts a time.
"""

from __future__ import annotations

import os
import signal
import shutil
import subprocess
import time
from pathlib import Path

import requests

from meltybase_kernel import ROOT, MeltyBaseKernel, free_port, kernel_binary


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def worker_pid(supervisor: int) -> int | None:
    workers = [pid for pid in children(supervisor) if "--worker" in cmdline(pid) and alive(pid)]
    return workers[0] if len(workers) == 1 else None


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split("\n")[0])


def redis_pid(data_dir: Path) -> int:
    return int((data_dir / "redis" / "redis.pid").read_text().strip())


def service_processes(data_dir: Path) -> list[int]:
    """Postgres and redis-server processes whose command line names `data_dir` (the
    postmaster, `postgres -D <data_dir>/postgres`, and redis-server with its socket path)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            line = " ".join(cmdline(int(entry)))
            program = Path(line.split(" ")[0]).name  # redis-server rewrites its title into one string
            if str(data_dir) in line and program in ("postgres", "redis-server", "setpriv"):
                found.append(int(entry))
    return found


def wait_for(condition, timeout: float = 60.0, interval: float = 0.05):
    """Polls `condition` until it returns something truthy; returns it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = condition()
    return value


def status_ok(url: str) -> bool:
    try:
        return requests.get(url + "/v1/system/status", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_worker_killed_with_sigkill_is_replaced_and_sigterm_leaves_nothing(meltybase_kernel):
    kernel = meltybase_kernel()
    supervisor = kernel.process.pid
    first_worker = wait_for(lambda: worker_pid(supervisor))
    assert first_worker, f"no worker process under the supervisor; log:\n{kernel.log_text()}"
    postmaster = postmaster_pid(kernel.data_dir)
    redis = redis_pid(kernel.data_dir)
    assert alive(postmaster) and alive(redis)

    os.kill(first_worker, signal.SIGKILL)
    second_worker = wait_for(lambda: (pid := worker_pid(supervisor)) and pid != first_worker and pid)
    assert second_worker, f"the worker was not restarted; log:\n{kernel.log_text()}"
    assert wait_for(lambda: status_ok(kernel.url)), f"no answer after the restart; log:\n{kernel.log_text()}"
    # Same embedded services: the restart touched only the worker.
    assert postmaster_pid(kernel.data_dir) == postmaster and alive(postmaster)
    assert redis_pid(kernel.data_dir) == redis and alive(redis)
    assert kernel.process.poll() is None
    log = kernel.log_text()
    assert f"the kernel worker (pid {first_worker}) was killed by signal 9" in log
    assert f"restarted it at once as pid {second_worker}" in log

    # The CLI still finds the running Postgres (the supervisor holds the data-dir lock).
    listed = subprocess.run([str(kernel_binary()), "portal", "list", "--config", str(kernel.config)],
                            capture_output=True, text=True, timeout=120, cwd=kernel.directory)
    assert listed.returncode == 0, listed.stderr + listed.stdout
    assert "stopping a Postgres left running" not in kernel.log_text()

    assert kernel.stop() == 0
    assert not alive(second_worker)
    assert not alive(postmaster) and not alive(redis)
    assert wait_for(lambda: not service_processes(kernel.data_dir), timeout=20), service_processes(kernel.data_dir)


def test_supervisor_killed_with_sigkill_takes_worker_and_services_down():
    # Not the fixture: it would count the SIGKILL exit as a failure.
    kernel = MeltyBaseKernel()
    try:
        supervisor_killed_with_sigkill(kernel)
    finally:
        kernel.stop()
        kernel.cleanup()


def supervisor_killed_with_sigkill(kernel: MeltyBaseKernel) -> None:
    supervisor = kernel.process.pid
    worker = wait_for(lambda: worker_pid(supervisor))
    assert worker
    postmaster = postmaster_pid(kernel.data_dir)
    redis = redis_pid(kernel.data_dir)

    kernel.process.kill()
    kernel.process.wait()
    # The worker sees its lifeline close; the watchdog stops Postgres and Redis.
    assert wait_for(lambda: not alive(worker)), "the worker outlived its supervisor"
    assert wait_for(lambda: not alive(postmaster) and not alive(redis)), \
        f"Postgres {alive(postmaster)} / Redis {alive(redis)} outlived the supervisor"
    assert wait_for(lambda: not service_processes(kernel.data_dir), timeout=20), service_processes(kernel.data_dir)

    # A new supervisor on the same data directory starts cleanly.
    log_path = kernel.directory / "second.log"
    with open(log_path, "wb") as log:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
        second = subprocess.Popen([str(kernel_binary()), "serve", "--config", str(kernel.config)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=environment, cwd=kernel.directory)
        try:
            assert wait_for(lambda: status_ok(kernel.url), timeout=120), log_path.read_text(errors="replace")
            assert "left running by an earlier kernel" not in log_path.read_text(errors="replace")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
    assert wait_for(lambda: not service_processes(kernel.data_dir), timeout=20)


CRASH_PLUGIN_PATCH = (
    "static void route_echo(mb_plugin_instance *instance, mb_request_token token,\n"
    "                       const mb_host_request *request) {\n",
    "static void route_echo(mb_plugin_instance *instance, mb_request_token token,\n"
    "                       const mb_host_request *request) {\n"
    "    if (request->body.len == 5 && memcmp(request->body.data, \"crash\", 5) == 0) __builtin_trap();\n",
)


def build_crash_plugin(directory: Path) -> Path:
    """The C example plugin renamed `crash-c`, trapping when /echo receives `crash`."""
    source = (ROOT / "Plugins/Examples/EchoC/echo_plugin.c").read_text()
    assert CRASH_PLUGIN_PATCH[0] in source, "echo_plugin.c changed: update the crash patch"
    source = source.replace(CRASH_PLUGIN_PATCH[0], CRASH_PLUGIN_PATCH[1])
    source = source.replace('#define ECHO_NAME "echo-c"', '#define ECHO_NAME "crash-c"')
    source = source.replace('#define ECHO_ROUTE_PREFIX "echo-c"', '#define ECHO_ROUTE_PREFIX "crash-c"')
    if "#include <string.h>" not in source:
        source = "#include <string.h>\n" + source
    (directory / "crash_plugin.c").write_text(source)
    library = directory / "libcrash_c.so"
    # The example names a Studio folder beside its library (ABI 1.5): ship it there too.
    shutil.copytree(ROOT / "Plugins/Examples/EchoC/studio", directory / "echo_c_studio", dirs_exist_ok=True)
    subprocess.run(["cc", "-std=c11", "-O0", "-g", "-fPIC", "-shared", "-pthread",
                    "-I", str(ROOT / "Sources/MeltyPluginABI/include"), "-o", str(library), str(directory / "crash_plugin.c")],
                   check=True, capture_output=True, timeout=120)
    return library


def test_a_trap_in_a_plugin_costs_a_restart_and_names_the_plugin(meltybase_kernel, tmp_path):
    library = build_crash_plugin(tmp_path)
    kernel = meltybase_kernel(extra_toml=f"""
[plugins.crash-c]
path = "{library}"
required = true

[portals.demo]
plugins = ["crash-c"]
""")
    supervisor = kernel.process.pid
    worker = wait_for(lambda: worker_pid(supervisor))
    route = kernel.url + "/p/demo/crash-c/echo"
    assert requests.post(route, data="hello", timeout=10).text == "hello"

    try:
        requests.post(route, data="crash", timeout=60)
    except requests.RequestException:
        pass  # The connection dies with the worker.
    assert wait_for(lambda: not alive(worker)), "the trap did not end the worker"
    assert wait_for(lambda: requests.post(route, data="again", timeout=10).text == "again" if status_ok(kernel.url) else False, timeout=120), \
        kernel.log_text()
    log = kernel.log_text()
    assert wait_for(lambda: "the innermost plugin in the crash's stack is 'crash-c' (libcrash_c.so)" in kernel.log_text(), timeout=30), log
    assert f"the kernel worker (pid {worker}) was killed by signal 4" in kernel.log_text()
    assert kernel.process.poll() is None


def test_tls_listener_is_served_on_the_inherited_socket_across_a_restart(meltybase_kernel, tmp_path):
    certs = tmp_path / "certs"
    made = subprocess.run([str(kernel_binary()), "certs", "init", "--out", str(certs)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr + made.stdout
    tls_port = free_port()
    kernel = meltybase_kernel(extra_toml=f"""
[[listeners]]
host = "127.0.0.1"
port = {tls_port}
tls_certificate = "{certs / 'server.pem'}"
tls_key = "{certs / 'server.key'}"
""")
    tls_url = f"https://127.0.0.1:{tls_port}/v1/system/status"
    ca = str(certs / "ca.pem")
    assert requests.get(tls_url, verify=ca, timeout=10).status_code == 200
    # Plain HTTP on the TLS port is refused by the TLS handshake, not served.
    try:
        plain = requests.get(f"http://127.0.0.1:{tls_port}/v1/system/status", timeout=10).status_code
    except requests.RequestException:
        plain = None
    assert plain != 200

    supervisor = kernel.process.pid
    worker = wait_for(lambda: worker_pid(supervisor))
    os.kill(worker, signal.SIGKILL)
    assert wait_for(lambda: (pid := worker_pid(supervisor)) and pid != worker)

    def tls_ok() -> bool:
        try:
            return requests.get(tls_url, verify=ca, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    assert wait_for(tls_ok), kernel.log_text()


def test_a_worker_that_cannot_start_stops_the_supervisor_instead_of_looping(tmp_path):
    os.chmod(tmp_path, 0o755)
    data_dir = tmp_path / "data"
    config = tmp_path / "plugins.toml"
    config.write_text(f"""
[kernel]
data_dir = "{data_dir}"

[[listeners]]
host = "127.0.0.1"
port = {free_port()}

[plugins.missing]
path = "{tmp_path / 'libmissing.so'}"
required = true
""")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTYBASE_")}
    result = subprocess.run([str(kernel_binary()), "serve", "--config", str(config)], capture_output=True, text=True,
                            timeout=300, env=environment, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert 'plugin "missing"' in output and "not loaded" in output
    assert "the kernel could not start (worker exited with status 78)" in output
    assert "restarting it" not in output and "restarted it" not in output
    assert not service_processes(data_dir)
