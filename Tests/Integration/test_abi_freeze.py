"""The ABI layout freeze (abi_freeze.py) against the real header, the headers shipped as
ABI 1.0 to 1.3 (from git), and, as a test of the test, broken copies of the header that
must each be caught. Needs only `cc`, no kernel."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest

import abi_freeze
from meltybase_kernel import ROOT

INCLUDE = ROOT / "Sources" / "MeltyPluginABI" / "include"
HEADER = INCLUDE / "meltybase_plugin.h"

# The commits whose header was each minor version's last, for the history check.
SHIPPED = {0: "5341c54", 1: "2b8e95e", 2: "2a18c71", 3: "626a83a", 4: "d1ee4ce", 5: "df6a1ad", 6: "8f7b02b", 7: "6f04574", 8: "9bf0518"}


def test_the_header_matches_the_frozen_layout():
    assert abi_freeze.check(INCLUDE) == []


def test_every_struct_and_minor_version_has_a_table():
    minor = abi_freeze.header_minor(HEADER.read_text())
    declared = abi_freeze.header_structs(HEADER.read_text())
    assert set(declared) == set(abi_freeze.STRUCTS)
    for name, versions in abi_freeze.STRUCTS.items():
        assert max(versions) == minor, f"{name} has no table for ABI 1.{minor}"
    # The struct_size a plugin (or host) of each released version had, as the loader (112)
    # and the SDK's tests rely on it; later versions only add entries.
    def sizes(name):
        return {m: v[0] for m, v in abi_freeze.STRUCTS[name].items() if m <= 5}
    assert sizes("mb_plugin_descriptor") == {0: 112, 1: 120, 2: 120, 3: 128, 4: 128, 5: 168}
    assert sizes("mb_host_api") == {0: 104, 1: 120, 2: 136, 3: 136, 4: 144, 5: 144}
    assert sizes("mb_host_request") == {0: 152, 1: 184, 2: 184, 3: 184, 4: 184, 5: 184}


@pytest.mark.parametrize("minor", sorted(SHIPPED))
def test_the_header_shipped_as_each_older_minor_matches_its_tables(minor, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{SHIPPED[minor]}:Sources/MeltyPluginABI/include/meltybase_plugin.h"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        pytest.skip(f"commit {SHIPPED[minor]} is not in this clone: {shown.stderr.strip()}")
    (tmp_path / "meltybase_plugin.h").write_text(shown.stdout)
    assert abi_freeze.check(tmp_path, upto=minor) == []


def mutated(tmp_path: Path, old: str, new: str) -> Path:
    text = HEADER.read_text()
    assert text.count(old) == 1, f"the test's anchor {old!r} is not unique in the header"
    (tmp_path / "meltybase_plugin.h").write_text(text.replace(old, new))
    return tmp_path


# Test of the test: each broken header must fail, and for the reason named.
BROKEN = {
    "two fields swapped (same size and type)": (
        "    uint32_t abi_major;\n    uint32_t abi_minor;\n\n    /** Writes one structured log line",
        "    uint32_t abi_minor;\n    uint32_t abi_major;\n\n    /** Writes one structured log line",
        "offset of mb_host_api.abi_major (ABI 1.0): expected 8, found 12"),
    "a field inserted in the middle": (
        "    mb_host_bytes body;\n    /** Portal name",
        "    mb_host_bytes body;\n    mb_host_bytes fragment;\n    /** Portal name",
        "offset of mb_host_request.portal_name (ABI 1.0): expected 88, found 104"),
    "a field appended without a table for its version": (
        "    const char *const *streaming_route_prefixes;\n} mb_plugin_descriptor;",
        "    const char *const *streaming_route_prefixes;\n    void (*unfrozen)(void);\n} mb_plugin_descriptor;",
        "sizeof(mb_plugin_descriptor): expected 176, found 184"),
    "a field widened": (
        "    uint16_t http_status;", "    uint32_t http_status;",
        "size of mb_host_http_response.http_status (ABI 1.0): expected 2, found 4"),
    "a host function's signature changed, not its size": (
        "mb_status (*respond)(mb_request_token token, uint16_t status,", "mb_status (*respond)(mb_request_token token, int status,",
        "type of mb_host_api.respond (ABI 1.0) is"),
    "a callback typedef changed": (
        "typedef void (*mb_bytes_sink)(void *plugin_context, mb_host_bytes bytes);",
        "typedef void (*mb_bytes_sink)(void *plugin_context, mb_plugin_bytes bytes);",
        "type of mb_bytes_sink is"),
    "an enum value renumbered": (
        "    MB_ERR_UNSUPPORTED = 6,", "    MB_ERR_UNSUPPORTED = 9,", "MB_ERR_UNSUPPORTED: expected 6, found 9"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_freeze_catches_a_broken_header(case, tmp_path):
    old, new, expected = BROKEN[case]
    problems = abi_freeze.check(mutated(tmp_path, old, new))
    assert problems, f"{case}: the freeze check passed a broken header"
    assert any(expected in line for line in problems), f"{case}: expected {expected!r} among {problems}"


def test_the_freeze_names_the_field_list_change_too(tmp_path):
    old, new, _ = BROKEN["a field inserted in the middle"]
    problems = abi_freeze.check(mutated(tmp_path, old, new))
    assert any(line.startswith("mb_host_request: header fields") and "fragment" in line for line in problems), problems


def test_a_new_field_in_the_previous_versions_tail_padding_is_refused(monkeypatch):
    # mb_plugin_http_request ends with a uint32_t at 72 and is 80 bytes: a uint32_t appended
    # in 1.5 would land at 76, inside the padding a 1.4 plugin leaves uninitialised.
    structs = copy.deepcopy(abi_freeze.STRUCTS)
    structs["mb_plugin_http_request"][5] = (80, [("flags", 76, 4, "uint32_t")])
    monkeypatch.setattr(abi_freeze, "STRUCTS", structs)
    problems = abi_freeze.table_problems(5)
    assert any("mb_plugin_http_request.flags (ABI 1.5): offset 76 lies inside ABI 1.4's struct_size 80" in line for line in problems), problems
