#!/usr/bin/env bash
# Builds the C plugins of MeltyBase as shared libraries.
#
#   scripts/build-c-plugins.sh [--with-broken] OUTDIR
#
#   OUTDIR/libecho_c.so              Plugins/Examples/EchoC/echo_plugin.c
#   OUTDIR/echo_c_studio/            Plugins/Examples/EchoC/studio (its Studio page, ABI 1.5)
#   OUTDIR/broken/lib<name>.so       Tests/Fixtures/BrokenPlugins/<name>.c  (--with-broken)
#   OUTDIR/libacme_report.so         Tests/Fixtures/ThirdPartyPlugin/thirdparty_plugin.c (--with-broken)
#   OUTDIR/acme_report_studio/       Tests/Fixtures/ThirdPartyPlugin/studio (--with-broken)
#
# Compiler: ${CC:-cc}. An output is rebuilt only when it is missing or older than its
# source, the ABI header or this script; one line is printed per file actually built.
# Changing CC does not by itself trigger a rebuild (delete OUTDIR for that).
set -euo pipefail

usage() {
    echo "usage: $(basename "$0") [--with-broken] OUTDIR" >&2
}

with_broken=0
outdir=""
for arg in "$@"; do
    case "$arg" in
        --with-broken) with_broken=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "error: unknown option: $arg" >&2; usage; exit 2 ;;
        *)
            if [[ -n "$outdir" ]]; then
                echo "error: more than one OUTDIR given" >&2; usage; exit 2
            fi
            outdir="$arg"
            ;;
    esac
done
if [[ -z "$outdir" ]]; then
    usage
    exit 2
fi

script_path="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
repo_root="$(cd "$(dirname "$script_path")/.." && pwd)"
include_dir="$repo_root/Sources/MeltyPluginABI/include"
header="$include_dir/meltybase_plugin.h"

cc="${CC:-cc}"
cflags=(-std=c11 -O2 -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror -pthread -I "$include_dir")

if [[ ! -f "$header" ]]; then
    echo "error: ABI header not found: $header" >&2
    exit 1
fi

tmp_out=""
cleanup() {
    if [[ -n "$tmp_out" ]]; then
        rm -f -- "$tmp_out"
    fi
}
trap cleanup EXIT

# up_to_date OUTPUT DEPENDENCY...: true when OUTPUT exists and is newer than every dependency.
up_to_date() {
    local output="$1"
    shift
    [[ -f "$output" ]] || return 1
    local dep
    for dep in "$@"; do
        [[ "$output" -nt "$dep" ]] || return 1
    done
    return 0
}

# build SOURCE OUTPUT: compiles into a temporary file and renames it into place, so an
# interrupted or failed build never leaves a truncated library behind.
build() {
    local source="$1" output="$2"
    if [[ ! -f "$source" ]]; then
        echo "error: source not found: $source" >&2
        exit 1
    fi
    # Headers next to the source (the fixtures' shared fixture_plugin.h) count too.
    local local_headers=("$(dirname "$source")"/*.h)
    [[ -e "${local_headers[0]}" ]] || local_headers=()
    if up_to_date "$output" "$source" "$header" "$script_path" "${local_headers[@]}"; then
        return 0
    fi
    mkdir -p -- "$(dirname "$output")"
    tmp_out="$output.tmp.$$"
    "$cc" "${cflags[@]}" -o "$tmp_out" "$source"
    mv -f -- "$tmp_out" "$output"
    tmp_out=""
    echo "built $output"
}

# copy_studio SOURCE_DIR OUTPUT_DIR: a plugin's Studio folder goes beside its library (the
# descriptor's studio_directory names it relative to the library's folder). Replaced only
# when its contents differ.
copy_studio() {
    local source="$1" output="$2"
    if [[ -d "$output" ]] && diff -r -q -- "$source" "$output" >/dev/null 2>&1; then
        return 0
    fi
    mkdir -p -- "$(dirname "$output")"
    rm -rf -- "$output.tmp.$$"
    cp -R -- "$source" "$output.tmp.$$"
    rm -rf -- "$output"
    mv -- "$output.tmp.$$" "$output"
    echo "copied $output"
}

build "$repo_root/Plugins/Examples/EchoC/echo_plugin.c" "$outdir/libecho_c.so"
copy_studio "$repo_root/Plugins/Examples/EchoC/studio" "$outdir/echo_c_studio"

if [[ "$with_broken" -eq 1 ]]; then
    shopt -s nullglob
    sources=("$repo_root"/Tests/Fixtures/BrokenPlugins/*.c)
    shopt -u nullglob
    if [[ ${#sources[@]} -eq 0 ]]; then
        echo "error: no broken plugin fixtures in $repo_root/Tests/Fixtures/BrokenPlugins" >&2
        exit 1
    fi
    for source in "${sources[@]}"; do
        name="$(basename "$source" .c)"
        build "$source" "$outdir/broken/lib$name.so"
    done
    build "$repo_root/Tests/Fixtures/ThirdPartyPlugin/thirdparty_plugin.c" "$outdir/libacme_report.so"
    copy_studio "$repo_root/Tests/Fixtures/ThirdPartyPlugin/studio" "$outdir/acme_report_studio"
fi
