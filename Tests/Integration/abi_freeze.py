"""The frozen layout of meltybase_plugin.h (ABI 1.x on LP64: x86_64 and aarch64 Linux).

A plugin compiled against ABI 1.N keeps working on every later 1.x kernel only if no field
of any struct ever moves, changes size or type, or is inserted before the end. That is
checked here, not hoped: `check(include_dir)` compiles a C program against the header in
`include_dir` that compares every field's offsetof, sizeof and type with the tables below,
and that every struct's size as of each minor version is the `struct_size` a plugin (or
host) of that version had. Python reads the header's field lists and refuses a field the
tables do not know (an insertion, or an append nobody froze).

The tables: one per struct per minor version, `minor: (struct_size as of that version,
[(field, offset, size, C type), ...the fields that version appended])`. A version that
appended nothing to a struct has an empty list. The rules the check enforces:
  - each struct has a table for every minor from the one that introduced it to MB_ABI_MINOR;
  - the header's fields, in order, are exactly the tables' fields in version order;
  - every field's offset, size and type are as frozen; consecutive fields are adjacent
    (only alignment padding between them);
  - a version's first new field starts at or after the previous version's struct_size
    (a field in the old trailing padding would make MB_HAS_FIELD true on an old plugin
    whose padding is garbage);
  - the enum values and callback typedefs are as frozen.

Adding ABI 1.9: append the new fields to the header, bump MB_ABI_MINOR, then add a `9:`
entry to every struct below (`9: (same size, [])` where nothing changed), a new struct with
its first table at `9:`, new typedefs to TYPEDEFS (with 9) and new enum values to ENUMS. Never edit
an entry for 0 to 8.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

ABI_MAJOR = 1

STRUCTS: dict[str, dict[int, tuple[int, list[tuple[str, int, int, str]]]]] = {
    "mb_host_bytes": {
        0: (16, [
            ("data", 0, 8, "const uint8_t *"),
            ("len", 8, 8, "size_t"),
        ]),
        1: (16, []),
        2: (16, []),
        3: (16, []),
        4: (16, []),
        5: (16, []),
        6: (16, []),
        7: (16, []),
        8: (16, []),
        9: (16, []),
    },
    "mb_plugin_bytes": {
        0: (16, [
            ("data", 0, 8, "const uint8_t *"),
            ("len", 8, 8, "size_t"),
        ]),
        1: (16, []),
        2: (16, []),
        3: (16, []),
        4: (16, []),
        5: (16, []),
        6: (16, []),
        7: (16, []),
        8: (16, []),
        9: (16, []),
    },
    "mb_host_error_buffer": {
        0: (16, [
            ("data", 0, 8, "char *"),
            ("capacity", 8, 8, "size_t"),
        ]),
        1: (16, []),
        2: (16, []),
        3: (16, []),
        4: (16, []),
        5: (16, []),
        6: (16, []),
        7: (16, []),
        8: (16, []),
        9: (16, []),
    },
    "mb_host_header": {
        0: (32, [
            ("name", 0, 16, "mb_host_bytes"),
            ("value", 16, 16, "mb_host_bytes"),
        ]),
        1: (32, []),
        2: (32, []),
        3: (32, []),
        4: (32, []),
        5: (32, []),
        6: (32, []),
        7: (32, []),
        8: (32, []),
        9: (32, []),
    },
    "mb_plugin_header": {
        0: (32, [
            ("name", 0, 16, "mb_plugin_bytes"),
            ("value", 16, 16, "mb_plugin_bytes"),
        ]),
        1: (32, []),
        2: (32, []),
        3: (32, []),
        4: (32, []),
        5: (32, []),
        6: (32, []),
        7: (32, []),
        8: (32, []),
        9: (32, []),
    },
    "mb_host_request": {
        0: (152, [
            ("struct_size", 0, 8, "size_t"),
            ("method", 8, 16, "mb_host_bytes"),
            ("path", 24, 16, "mb_host_bytes"),
            ("query", 40, 16, "mb_host_bytes"),
            ("headers", 56, 8, "const mb_host_header *"),
            ("header_count", 64, 8, "size_t"),
            ("body", 72, 16, "mb_host_bytes"),
            ("portal_name", 88, 16, "mb_host_bytes"),
            ("request_id", 104, 16, "mb_host_bytes"),
            ("remote_address", 120, 16, "mb_host_bytes"),
            ("client_certificate_subject", 136, 16, "mb_host_bytes"),
        ]),
        1: (184, [
            ("route_prefix", 152, 16, "mb_host_bytes"),
            ("credential_json", 168, 16, "mb_host_bytes"),
        ]),
        2: (184, []),
        3: (184, []),
        4: (184, []),
        5: (184, []),
        6: (184, []),
        7: (192, [
            ("body_streamed", 184, 4, "int32_t"),
        ]),
        8: (192, []),
        9: (208, [
            ("whole_body", 192, 16, "mb_host_bytes"),
        ]),
    },
    "mb_plugin_http_request": {
        0: (80, [
            ("struct_size", 0, 8, "size_t"),
            ("method", 8, 16, "mb_plugin_bytes"),
            ("url", 24, 16, "mb_plugin_bytes"),
            ("headers", 40, 8, "const mb_plugin_header *"),
            ("header_count", 48, 8, "size_t"),
            ("body", 56, 16, "mb_plugin_bytes"),
            ("timeout_ms", 72, 4, "uint32_t"),
        ]),
        1: (80, []),
        2: (80, []),
        3: (80, []),
        4: (80, []),
        5: (80, []),
        6: (80, []),
        7: (80, []),
        8: (80, []),
        9: (80, []),
    },
    "mb_host_http_response": {
        0: (64, [
            ("struct_size", 0, 8, "size_t"),
            ("status", 8, 4, "mb_status"),
            ("http_status", 12, 2, "uint16_t"),
            ("headers", 16, 8, "const mb_host_header *"),
            ("header_count", 24, 8, "size_t"),
            ("body", 32, 16, "mb_host_bytes"),
            ("error", 48, 16, "mb_host_bytes"),
        ]),
        1: (64, []),
        2: (64, []),
        3: (64, []),
        4: (64, []),
        5: (64, []),
        6: (64, []),
        7: (64, []),
        8: (64, []),
        9: (64, []),
    },
    "mb_service_binding": {
        0: (24, [
            ("table", 0, 8, "const void *"),
            ("table_size", 8, 8, "size_t"),
            ("instance", 16, 8, "mb_plugin_instance *"),
        ]),
        1: (24, []),
        2: (24, []),
        3: (24, []),
        4: (24, []),
        5: (24, []),
        6: (24, []),
        7: (24, []),
        8: (24, []),
        9: (24, []),
    },
    "mb_json_service": {
        0: (16, [
            ("struct_size", 0, 8, "size_t"),
            ("call", 8, 8, "mb_status (*)(mb_plugin_instance *, mb_host_bytes, mb_host_bytes, mb_service_reply, void *)"),
        ]),
        1: (16, []),
        2: (16, []),
        3: (16, []),
        4: (16, []),
        5: (16, []),
        6: (16, []),
        7: (16, []),
        8: (16, []),
        9: (16, []),
    },
    "mb_host_api": {
        0: (104, [
            ("struct_size", 0, 8, "size_t"),
            ("abi_major", 8, 4, "uint32_t"),
            ("abi_minor", 12, 4, "uint32_t"),
            ("log", 16, 8, "void (*)(const mb_host_plugin *, const mb_host_portal *, mb_log_level, const char *, size_t)"),
            ("audit", 24, 8, "mb_status (*)(const mb_host_plugin *, const mb_host_portal *, const char *, size_t, const char *, size_t, const char *, size_t, mb_host_error_buffer)"),
            ("counter_add", 32, 8, "void (*)(const mb_host_plugin *, const mb_host_portal *, const char *, size_t, int64_t)"),
            ("respond", 40, 8, "mb_status (*)(mb_request_token, uint16_t, const mb_plugin_header *, size_t, mb_plugin_bytes)"),
            ("ws_send", 48, 8, "mb_status (*)(mb_connection_id, int, mb_plugin_bytes)"),
            ("ws_broadcast", 56, 8, "size_t (*)(const mb_connection_id *, size_t, int, mb_plugin_bytes)"),
            ("ws_close", 64, 8, "mb_status (*)(mb_connection_id, uint16_t, mb_plugin_bytes)"),
            ("service_export", 72, 8, "mb_status (*)(const mb_host_plugin *, const char *, size_t, uint32_t, const void *, size_t, mb_host_error_buffer)"),
            ("service_lookup", 80, 8, "mb_status (*)(const mb_host_portal *, const char *, size_t, uint32_t, mb_service_binding *, mb_host_error_buffer)"),
            ("http_fetch", 88, 8, "mb_status (*)(const mb_host_plugin *, const mb_host_portal *, const mb_plugin_http_request *, mb_http_completion, void *, mb_host_error_buffer)"),
            ("portal_name", 96, 8, "mb_host_bytes (*)(const mb_host_portal *)"),
        ]),
        1: (120, [
            ("postgres_conninfo", 104, 8, "const char *(*)(const mb_host_plugin *, const mb_host_portal *)"),
            ("portal_jwt_sign", 112, 8, "mb_status (*)(const mb_host_portal *, mb_host_bytes, mb_token_completion, void *, mb_host_error_buffer)"),
        ]),
        2: (136, [
            ("secret_seal", 120, 8, "mb_status (*)(const mb_host_plugin *, const mb_host_portal *, mb_host_bytes, mb_host_bytes, mb_bytes_sink, void *, mb_host_error_buffer)"),
            ("secret_open", 128, 8, "mb_status (*)(const mb_host_plugin *, const mb_host_portal *, mb_host_bytes, mb_host_bytes, mb_bytes_sink, void *, mb_host_error_buffer)"),
        ]),
        3: (136, []),
        4: (144, [
            ("audit_async", 136, 8, "mb_status (*)(const mb_host_plugin *, const mb_host_portal *, const char *, size_t, const char *, size_t, const char *, size_t, mb_status_completion, void *, mb_host_error_buffer)"),
        ]),
        5: (144, []),
        6: (160, [
            ("portal_token_verify", 144, 8, "mb_status (*)(const mb_host_portal *, mb_host_bytes, mb_credential_completion, void *, mb_host_error_buffer)"),
            ("redis_url", 152, 8, "const char *(*)(const mb_host_plugin *)"),
        ]),
        7: (192, [
            ("request_body_read", 160, 8, "mb_status (*)(mb_request_token, mb_body_chunk_completion, void *)"),
            ("respond_start", 168, 8, "mb_status (*)(mb_request_token, uint16_t, const mb_plugin_header *, size_t)"),
            ("respond_write", 176, 8, "mb_status (*)(mb_request_token, mb_plugin_bytes, mb_status_completion, void *)"),
            ("respond_end", 184, 8, "mb_status (*)(mb_request_token, int32_t)"),
        ]),
        8: (200, [
            ("usage_mark", 192, 8, "mb_status (*)(const mb_host_plugin *, const mb_host_portal *, const char *, size_t, const char *, size_t)"),
        ]),
        9: (200, []),
    },
    "mb_host_instance_context": {
        0: (48, [
            ("struct_size", 0, 8, "size_t"),
            ("portal", 8, 8, "const mb_host_portal *"),
            ("portal_name", 16, 16, "mb_host_bytes"),
            ("config_json", 32, 16, "mb_host_bytes"),
        ]),
        1: (48, []),
        2: (48, []),
        3: (48, []),
        4: (48, []),
        5: (48, []),
        6: (48, []),
        7: (48, []),
        8: (48, []),
        9: (48, []),
    },
    "mb_plugin_descriptor": {
        0: (112, [
            ("struct_size", 0, 8, "size_t"),
            ("abi_major", 8, 4, "uint32_t"),
            ("abi_minor", 12, 4, "uint32_t"),
            ("build_signature", 16, 8, "const char *"),
            ("name", 24, 8, "const char *"),
            ("version", 32, 8, "const char *"),
            ("route_prefix", 40, 8, "const char *"),
            ("init", 48, 8, "mb_status (*)(const mb_host_api *, const mb_host_plugin *, mb_host_bytes, mb_host_error_buffer)"),
            ("instance_create", 56, 8, "mb_status (*)(const mb_host_instance_context *, mb_plugin_instance **, mb_host_error_buffer)"),
            ("instance_destroy", 64, 8, "void (*)(mb_plugin_instance *)"),
            ("handle_request", 72, 8, "void (*)(mb_plugin_instance *, mb_request_token, const mb_host_request *)"),
            ("ws_open", 80, 8, "mb_status (*)(mb_plugin_instance *, mb_connection_id, const mb_host_request *, mb_host_error_buffer)"),
            ("ws_message", 88, 8, "void (*)(mb_plugin_instance *, mb_connection_id, int, mb_host_bytes)"),
            ("ws_close", 96, 8, "void (*)(mb_plugin_instance *, mb_connection_id, uint16_t)"),
            ("shutdown", 104, 8, "void (*)(void)"),
        ]),
        1: (120, [
            ("extra_route_prefixes", 112, 8, "const char *const *"),
        ]),
        2: (120, []),
        3: (128, [
            ("cancel_request", 120, 8, "void (*)(mb_plugin_instance *, mb_request_token)"),
        ]),
        4: (128, []),
        5: (168, [
            ("studio_directory", 128, 8, "const char *"),
            ("studio_pages", 136, 8, "const mb_studio_page *const *"),
            ("cli_commands", 144, 8, "const mb_cli_command *const *"),
            ("cli_run", 152, 8, "int (*)(const mb_host_cli_context *, const char *, int, const char *const *)"),
            ("health", 160, 8, "mb_status (*)(mb_bytes_sink, void *, mb_host_error_buffer)"),
        ]),
        6: (168, []),
        7: (176, [
            ("streaming_route_prefixes", 168, 8, "const char *const *"),
        ]),
        8: (176, []),
        9: (176, []),
    },
    "mb_studio_page": {
        5: (32, [
            ("struct_size", 0, 8, "size_t"),
            ("id", 8, 8, "const char *"),
            ("title", 16, 8, "const char *"),
            ("module", 24, 8, "const char *"),
        ]),
        6: (32, []),
        7: (32, []),
        8: (32, []),
        9: (32, []),
    },
    "mb_cli_command": {
        5: (32, [
            ("struct_size", 0, 8, "size_t"),
            ("name", 8, 8, "const char *"),
            ("summary", 16, 8, "const char *"),
            ("help", 24, 8, "const char *"),
        ]),
        6: (32, []),
        7: (32, []),
        8: (32, []),
        9: (32, []),
    },
    "mb_host_cli_context": {
        5: (56, [
            ("struct_size", 0, 8, "size_t"),
            ("host", 8, 8, "const mb_host_api *"),
            ("plugin", 16, 8, "const mb_host_plugin *"),
            ("config_json", 24, 16, "mb_host_bytes"),
            ("write_out", 40, 8, "void (*)(const struct mb_host_cli_context *, mb_plugin_bytes)"),
            ("write_err", 48, 8, "void (*)(const struct mb_host_cli_context *, mb_plugin_bytes)"),
        ]),
        6: (56, []),
        7: (56, []),
        8: (56, []),
        9: (56, []),
    },
}

# Callback and handle typedefs: name -> (minor that introduced it, type as frozen; parameter
# names do not matter to the ABI).
TYPEDEFS: dict[str, tuple[int, str]] = {
    "mb_request_token": (0, "uint64_t"),
    "mb_connection_id": (0, "uint64_t"),
    "mb_http_completion": (0, "void (*)(void *, const mb_host_http_response *)"),
    "mb_service_reply": (0, "void (*)(void *, mb_status, mb_plugin_bytes)"),
    "mb_plugin_entry_fn": (0, "const mb_plugin_descriptor *(*)(void)"),
    "mb_token_completion": (1, "void (*)(void *, mb_status, mb_host_bytes)"),
    "mb_bytes_sink": (2, "void (*)(void *, mb_host_bytes)"),
    "mb_status_completion": (4, "void (*)(void *, mb_status, mb_host_bytes)"),
    "mb_credential_completion": (6, "void (*)(void *, mb_status, mb_host_bytes)"),
    "mb_body_chunk_completion": (7, "void (*)(void *, mb_status, mb_host_bytes)"),
}

ENUMS: dict[str, dict[str, int]] = {
    "mb_status": {
        "MB_OK": 0, "MB_ERR_INVALID_ARGUMENT": 1, "MB_ERR_NOT_FOUND": 2, "MB_ERR_REFUSED": 3,
        "MB_ERR_UNAVAILABLE": 4, "MB_ERR_INTERNAL": 5, "MB_ERR_UNSUPPORTED": 6, "MB_ERR_ALREADY_EXISTS": 7,
    },
    "mb_log_level": {
        "MB_LOG_TRACE": 0, "MB_LOG_DEBUG": 1, "MB_LOG_INFO": 2, "MB_LOG_NOTICE": 3,
        "MB_LOG_WARNING": 4, "MB_LOG_ERROR": 5, "MB_LOG_CRITICAL": 6,
    },
}


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def header_structs(header: str) -> dict[str, list[str]]:
    """Field names, in declaration order, of every `typedef struct X { ... } X;`."""
    structs = {}
    for name, body in re.findall(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", _strip_comments(header), re.S):
        fields, depth, current = [], 0, ""
        for char in body:
            depth += char == "("
            depth -= char == ")"
            if char == ";" and depth == 0:
                declaration = " ".join(current.split())
                current = ""
                pointer = re.search(r"\(\s*\*\s*(\w+)\s*\)", declaration)
                fields.append(pointer.group(1) if pointer else re.findall(r"\w+", declaration)[-1])
            else:
                current += char
        structs[name] = fields
    return structs


def header_enums(header: str) -> dict[str, list[str]]:
    return {name: re.findall(r"\b(MB_\w+)\s*=", body)
            for name, body in re.findall(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", _strip_comments(header), re.S)}


def header_minor(header: str) -> int:
    return int(re.search(r"#define\s+MB_ABI_MINOR\s+(\d+)", header).group(1))


def layout(name: str, upto: int) -> list[tuple[int, str, int, int, str]]:
    """(minor, field, offset, size, type) of `name` as of minor version `upto`."""
    return [(minor, *field) for minor, (_, fields) in sorted(STRUCTS[name].items()) if minor <= upto for field in fields]


def table_problems(upto: int) -> list[str]:
    """Problems of the tables themselves (checked without a compiler)."""
    problems = []
    for name, versions in STRUCTS.items():
        minors = sorted(versions)
        if minors and minors[0] <= upto and minors != list(range(minors[0], max(minors[-1], upto) + 1)):
            problems.append(f"{name}: tables for minors {minors}, expected every minor from {minors[0]} to {upto}")
        previous_size = 0
        for minor in minors:
            size, fields = versions[minor]
            if fields and fields[0][1] < previous_size:
                problems.append(f"{name}.{fields[0][0]} (ABI 1.{minor}): offset {fields[0][1]} lies inside ABI 1.{minor - 1}'s "
                                f"struct_size {previous_size}; a new field must start at or after it")
            if size < previous_size:
                problems.append(f"{name} (ABI 1.{minor}): struct_size {size} shrank below {previous_size}")
            previous_size = size
    return problems


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def c_program(upto: int) -> str:
    """A C program that prints one line per mismatch between the header and the tables
    (as of minor `upto`) and exits 1 when there is any."""
    lines = [
        "#include <stddef.h>", "#include <stdio.h>", "#include <string.h>", '#include "meltybase_plugin.h"',
        "static int failures = 0;",
        "static void expect(const char *what, unsigned long long found, unsigned long long expected) {",
        '    if (found != expected) { printf("%s: expected %llu, found %llu\\n", what, expected, found); failures++; }',
        "}",
        "#define ALIGN_UP(n, a) (((n) + (a) - 1) / (a) * (a))",
        "#define SAME_TYPE(a, b) __builtin_types_compatible_p(a, b)",
        "int main(void) {",
        f'    expect("MB_ABI_MAJOR", MB_ABI_MAJOR, {ABI_MAJOR});',
        f'    expect("MB_ABI_MINOR", MB_ABI_MINOR, {upto});',
        '    expect("MB_PLUGIN_ENTRY_SYMBOL is \\"meltybase_plugin_entry\\"", strcmp(MB_PLUGIN_ENTRY_SYMBOL, "meltybase_plugin_entry") == 0, 1);',
    ]
    for enum, values in ENUMS.items():
        lines.append(f'    expect("sizeof({enum})", sizeof({enum}), 4);')
        for value_name, value in values.items():
            lines.append(f'    expect("{value_name}", {value_name}, {value});')
    for typedef, (since, c_type) in TYPEDEFS.items():
        if since <= upto:
            lines.append(f'    expect({_c_string(f"type of {typedef} is {c_type}")}, SAME_TYPE({typedef}, {c_type}), 1);')
    for name, versions in STRUCTS.items():
        if min(versions) > upto:
            continue
        fields = layout(name, upto)
        previous = None
        for minor, field, offset, size, c_type in fields:
            member = f"(({name} *)0)->{field}"
            where = f"{name}.{field} (ABI 1.{minor})"
            lines.append(f'    expect("offset of {where}", offsetof({name}, {field}), {offset});')
            lines.append(f'    expect("size of {where}", sizeof({member}), {size});')
            lines.append(f'    expect({_c_string(f"type of {where} is {c_type}")}, SAME_TYPE(__typeof__({member}), {c_type}), 1);')
            if previous is None:
                lines.append(f'    expect("{where} is the first field", offsetof({name}, {field}), 0);')
            else:
                lines.append(f'    expect("offset of {where}: right after {previous} (nothing inserted between)", offsetof({name}, {field}), '
                             f"ALIGN_UP(offsetof({name}, {previous}) + sizeof((({name} *)0)->{previous}), _Alignof(__typeof__({member}))));")
            previous = field
        for minor, (size, _) in sorted(versions.items()):
            if minor > upto:
                continue
            last = [f for f in fields if f[0] <= minor][-1][1]
            lines.append(f'    expect("sizeof({name}) as of ABI 1.{minor} (its struct_size)", '
                         f"ALIGN_UP(offsetof({name}, {last}) + sizeof((({name} *)0)->{last}), _Alignof({name})), {size});")
        lines.append(f'    expect("sizeof({name})", sizeof({name}), {versions[max(m for m in versions if m <= upto)][0]});')
    lines += ['    if (failures == 0) printf("ABI layout frozen: all checks passed\\n");', "    return failures == 0 ? 0 : 1;", "}"]
    return "\n".join(lines) + "\n"


def check(include_dir: Path, upto: int | None = None, cc: str = "cc") -> list[str]:
    """Every way the header in `include_dir` departs from the frozen layout (empty: none).
    `upto` checks an older header against the tables as of that minor version (default:
    the header's own MB_ABI_MINOR)."""
    header = (Path(include_dir) / "meltybase_plugin.h").read_text()
    minor = header_minor(header) if upto is None else upto
    problems = table_problems(minor)
    declared = header_structs(header)
    for name, fields in declared.items():
        if name not in STRUCTS:
            problems.append(f"{name}: struct in the header has no frozen table; add one (first version: the minor that introduced it)")
            continue
        frozen = [f[1] for f in layout(name, minor)]
        if fields != frozen:
            problems.append(f"{name}: header fields {fields} differ from the frozen ones {frozen} "
                            "(a field inserted, removed, renamed or reordered, or appended without a table for its version)")
    for name, versions in STRUCTS.items():
        if min(versions) <= minor and name not in declared:
            problems.append(f"{name}: frozen struct missing from the header")
    for enum, names in header_enums(header).items():
        if enum in ENUMS and names != list(ENUMS[enum]):
            problems.append(f"{enum}: header values {names} differ from the frozen ones {list(ENUMS[enum])}")
    with tempfile.TemporaryDirectory(prefix="abi-freeze-") as directory:
        source = Path(directory) / "abi_freeze.c"
        binary = Path(directory) / "abi_freeze"
        source.write_text(c_program(minor))
        built = subprocess.run([cc, "-std=gnu11", "-Wall", "-Werror", "-I", str(include_dir), "-o", str(binary), str(source)],
                               capture_output=True, text=True)
        if built.returncode != 0:
            return problems + ["the freeze program does not compile against this header:\n" + built.stderr[-3000:]]
        ran = subprocess.run([str(binary)], capture_output=True, text=True)
        if ran.returncode != 0:
            problems += ran.stdout.strip().splitlines()
    return problems


if __name__ == "__main__":
    import sys
    found = check(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "Sources/MeltyPluginABI/include")
    print("\n".join(found) or "ABI layout frozen: all checks passed")
    sys.exit(1 if found else 0)
