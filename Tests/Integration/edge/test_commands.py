"""`meltybase functions ...` (the Edge plugin's commands through the CLI alias): deploy a
folder, see it served by the running kernel, list, versions, logs, rollback, delete, and
refusals with the file and line."""

from __future__ import annotations

import time

from fnkit import invoke


def wait_for_text(portal, name: str, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = invoke(portal, name)
        if last.status_code == 200 and last.text == text:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not answer {text!r} within {timeout} s: {last.status_code} {last.text}")


def test_deploy_list_logs_rollback_and_delete_from_the_command_line(kernel, portal, tmp_path):
    folder = tmp_path / "cli-hello"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "word.ts").write_text('export const word: string = "one";\n')
    (folder / "index.ts").write_text('import { word } from "./lib/word.ts";\n'
                                     'Deno.serve(() => { console.log("said", word); return new Response(word); });\n')
    deployed = kernel.cli("functions", "deploy", "--portal", portal.name, "cli-hello", str(folder), timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    assert "version 1" in deployed.stdout
    wait_for_text(portal, "cli-hello", "one")

    (folder / "lib" / "word.ts").write_text('export const word: string = "two";\n')
    assert kernel.cli("functions", "deploy", "--portal", portal.name, "cli-hello", str(folder), timeout=120).returncode == 0
    wait_for_text(portal, "cli-hello", "two")

    listed = kernel.cli("functions", "list", "--portal", portal.name)
    assert listed.returncode == 0 and "cli-hello" in listed.stdout and "version 2" in listed.stdout
    versions = kernel.cli("edge", "versions", "--portal", portal.name, "cli-hello")
    assert versions.returncode == 0 and "* v2" in versions.stdout and "  v1" in versions.stdout

    deadline = time.monotonic() + 15
    while True:
        logs = kernel.cli("functions", "logs", "--portal", portal.name, "cli-hello")
        if "said two" in logs.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert logs.returncode == 0 and "said two" in logs.stdout

    rolled = kernel.cli("functions", "rollback", "--portal", portal.name, "cli-hello")
    assert rolled.returncode == 0 and "version 1" in rolled.stdout
    wait_for_text(portal, "cli-hello", "one")

    deleted = kernel.cli("functions", "delete", "--portal", portal.name, "cli-hello")
    assert deleted.returncode == 0
    deadline = time.monotonic() + 15
    while invoke(portal, "cli-hello").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert invoke(portal, "cli-hello").status_code == 404


def test_a_refused_deploy_names_the_file_and_line_and_stores_nothing(kernel, portal, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "index.ts").write_text('const n: number = "no";\nDeno.serve(() => new Response(String(n)));\n')
    refused = kernel.cli("functions", "deploy", "--portal", portal.name, "broken", str(folder), timeout=120)
    assert refused.returncode == 1
    assert "index.ts:1:7" in refused.stderr and "nothing was stored" in refused.stderr
    assert kernel.cli("functions", "versions", "--portal", portal.name, "broken").returncode == 1


def test_usage_errors_and_help(kernel, portal, tmp_path):
    assert kernel.cli("functions", "deploy", "--portal", portal.name).returncode == 2
    assert kernel.cli("functions", "deploy", "--portal", portal.name, "Bad Name", str(tmp_path)).returncode != 0
    missing = kernel.cli("functions", "deploy", "--portal", portal.name, "ok", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "nowhere" in missing.stderr
    helped = kernel.cli("functions", "deploy", "--help")
    assert helped.returncode == 0 and "function.json" in helped.stdout
    overview = kernel.cli("edge", "--help")
    assert overview.returncode == 0 and "deploy" in overview.stdout and "rollback" in overview.stdout
