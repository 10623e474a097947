#!/bin/bash
# Fuzz targets for every parser that reads outside input, built with
# libFuzzer, ASan and UBSan (tests/fuzz/fuzz_TARGET.c):
#   receive    request bodies of every content type, through hf_receive
#   signature  signature header values against bodies
#   json       the JSON wrapper and events from JSON, directly
#   conffile   the CGI's config file
#   envelope   spool files and spool file names
#   flatten    the walk over an object's text against json-c's tree
#
#   scripts/fuzz.sh replay [TARGET...]        run every saved input once
#   scripts/fuzz.sh run [SECONDS [TARGET...]] fuzz each for SECONDS (1800)
#   scripts/fuzz.sh minimize [TARGET...]      add to tests/fuzz/corpus/TARGET
#                                             what build/fuzz/TARGET/corpus
#                                             covers beyond it
#   scripts/fuzz.sh build
#
# Saved inputs: tests/fuzz/corpus/TARGET (seeds and coverage) and
# tests/fuzz/crashes/TARGET (every input that once failed, kept so that it
# never fails again).  `replay` is what scripts/test.sh runs: one line per
# target, "fuzz_TARGET: N inputs, no failure" or "fuzz_TARGET: FAILED".
set -eu -o pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
out="$top/build/fuzz"
all_targets="receive signature json conffile envelope flatten"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"
cflags="-Wall -Werror -g -O1 $sanitize $(apr-1-config --includes --cppflags)
    $(pkg-config --cflags json-c openssl) -Imod_hrflow -Icgi -Ibuild"
libs="$(apr-1-config --link-ld) $(pkg-config --libs json-c libcrypto)"
export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
limits="-timeout=10 -rss_limit_mb=2048"

# Largest input each target is fuzzed with: request bodies up to 64 KiB.
max_len() {
    case $1 in
    signature|conffile) echo 20000 ;;
    *) echo 65536 ;;
    esac
}

# Libraries a target needs beyond the core.
extra_libs() {
    case $1 in
    conffile) echo "$out/libcgi.a" ;;
    esac
}

# The sources of a program or library as Makefile.am lists them ($1: its
# variable's prefix, as mod_hrflow_libhrflow_la).
am_sources() {
    sed -n "/^$1_SOURCES/,/^[^[:space:]]/p" Makefile.am \
        | grep -Eo '[a-z_]+/[a-z0-9_]+\.c'
}

# Compiles $1 into $2 unless $2 is newer than it and every header.
compile() {
    local src=$1 obj=$2 h
    if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$0" ]; then
        for h in mod_hrflow/*.h cgi/*.h tests/fuzz/*.h; do
            [ "$obj" -nt "$h" ] || { h=stale; break; }
        done
        [ "$h" = stale ] || return 0
    fi
    # shellcheck disable=SC2086
    clang $cflags -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
}

# Sources $2... as the archive $1, from which a target links only what it
# uses.
build_lib() {
    local lib=$1 src obj objs="" stale=0
    shift
    mkdir -p "$out/obj"
    for src in "$@"; do
        obj="$out/obj/$(basename "$src" .c).o"
        compile "$src" "$obj"
        [ "$lib" -nt "$obj" ] || stale=1
        objs="$objs $obj"
    done
    if [ "$stale" = 1 ]; then
        rm -f "$lib"
        # shellcheck disable=SC2086
        ar rcs "$lib" $objs
    fi
}

build_target() {
    local t=$1 obj="$out/obj/fuzz_$1.o"
    compile "tests/fuzz/fuzz_$t.c" "$obj"
    # shellcheck disable=SC2046,SC2086
    clang $sanitize -fsanitize=fuzzer "$obj" $(extra_libs "$t") \
        "$out/libhrflow.a" $libs -o "$out/fuzz_$t"
}

build() {
    local t
    # shellcheck disable=SC2046
    build_lib "$out/libhrflow.a" $(am_sources mod_hrflow_libhrflow_la)
    # The CGI but its main().
    # shellcheck disable=SC2046
    build_lib "$out/libcgi.a" $(am_sources cgi_hrflow_cgi | grep -v cgi_main)
    for t in "$@"; do
        build_target "$t"
    done
}

# Directories of saved inputs of a target that exist.
saved_dirs() {
    local d
    for d in "$top/tests/fuzz/corpus/$1" "$top/tests/fuzz/crashes/$1"; do
        [ -d "$d" ] && echo "$d"
    done
}


# Why the run logged in $1 failed, in one line.
failure_reason() {
    grep -Eo 'broken invariant: .*|runtime error: .*|ERROR: [A-Za-z]+: [a-z-]+.*' \
        "$1" | head -n 1
}

# Runs every saved input of target $1 once; one line of result, then one
# indented line per failing input.  libFuzzer stops at a failure, so the
# inputs after it are run again in a new process.
replay_target() {
    local t=$1 log="$out/replay_$1.log" dirs files=() rest bad i why
    local failed_inputs=()
    mapfile -t dirs < <(saved_dirs "$t")
    [ "${#dirs[@]}" -eq 0 ] || mapfile -t files < <(find "${dirs[@]}" -type f | sort)
    if [ "${#files[@]}" -eq 0 ]; then
        echo "fuzz_$t: FAILED: no saved input"
        return 1
    fi
    rm -f "$log".* "$out/replay_$t"-*
    rest=("${files[@]}")
    while [ "${#rest[@]}" -gt 0 ]; do
        # shellcheck disable=SC2086
        "$out/fuzz_$t" $limits -artifact_prefix="$out/replay_$t-" \
            "${rest[@]}" >"$log" 2>&1 && break
        cp "$log" "$log.${#failed_inputs[@]}"
        bad=$(sed -n 's/^Running: //p' "$log" | tail -n 1)
        why=$(failure_reason "$log")
        failed_inputs+=("  ${bad#"$top"/}: ${why:-see $log.${#failed_inputs[@]}}")
        for i in "${!rest[@]}"; do
            [ "${rest[$i]}" = "$bad" ] && break
        done
        [ "${rest[$i]}" = "$bad" ] || break
        rest=("${rest[@]:$((i + 1))}")
    done
    if [ "${#failed_inputs[@]}" -eq 0 ]; then
        echo "fuzz_$t: ${#files[@]} inputs, no failure"
        return 0
    fi
    echo "fuzz_$t: FAILED on ${#failed_inputs[@]} of ${#files[@]} inputs" \
        "(logs: build/fuzz/replay_$t.log.N)"
    printf '%s\n' "${failed_inputs[@]}"
    return 1
}

# Fuzzes target $1 for $2 seconds; one line of result.
run_target() {
    local t=$1 seconds=$2 dir="$out/$1" log="$out/$1/fuzz.log" status=0
    local args dirs
    mkdir -p "$dir/corpus"
    mapfile -t dirs < <(saved_dirs "$t")
    args=(-max_len="$(max_len "$t")" -max_total_time="$seconds"
        -print_final_stats=1 -artifact_prefix="$dir/")
    [ -f "$top/tests/fuzz/$t.dict" ] && args+=(-dict="$top/tests/fuzz/$t.dict")
    # shellcheck disable=SC2086
    (cd "$dir" && "$out/fuzz_$t" $limits "${args[@]}" corpus "${dirs[@]}") \
        >"$log" 2>&1 || status=$?
    local runs speed cov
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    if [ "$status" -eq 0 ]; then
        echo "fuzz_$t: ${runs:-?} runs, ${speed:-?} exec/s, $cov," \
            "$(find "$dir/corpus" -type f | wc -l) inputs in build/fuzz/$t/corpus"
        return 0
    fi
    local found
    # shellcheck disable=SC2012
    found=$(ls -t "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* \
        "$dir"/leak-* "$dir"/slow-unit-* 2>/dev/null | head -n 1 || true)
    echo "fuzz_$t: FAILED after ${runs:-?} runs ($cov); log: build/fuzz/$t/fuzz.log"
    failure_reason "$log"
    if [ -n "$found" ]; then
        echo "  input: ${found#"$top"/}"
        echo "  keep it as a regression input once understood:"
        echo "    mkdir -p tests/fuzz/crashes/$t &&" \
            "cp ${found#"$top"/} tests/fuzz/crashes/$t/"
    fi
    return 1
}

# Adds to tests/fuzz/corpus/$1 the inputs of build/fuzz/$1/corpus that
# reach code or paths its inputs do not (the seeds stay as they are).
minimize_target() {
    local t=$1 before
    mkdir -p "$out/$t/corpus" "$top/tests/fuzz/corpus/$t"
    before=$(find "$top/tests/fuzz/corpus/$t" -type f | wc -l)
    # shellcheck disable=SC2086
    "$out/fuzz_$t" -merge=1 -max_len="$(max_len "$t")" $limits \
        -artifact_prefix="$out/$t/merge-" \
        "$top/tests/fuzz/corpus/$t" "$out/$t/corpus" >"$out/$t/merge.log" 2>&1
    echo "fuzz_$t: $(find "$top/tests/fuzz/corpus/$t" -type f | wc -l)" \
        "inputs in tests/fuzz/corpus/$t (were $before)"
}

mode=${1:-replay}
[ $# -gt 0 ] && shift
case $mode in
replay|minimize|build) targets=${*:-$all_targets} ;;
run)
    seconds=${1:-1800}
    [ $# -gt 0 ] && shift
    targets=${*:-$all_targets}
    ;;
*)
    sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
    ;;
esac
for t in $targets; do
    case " $all_targets " in
    *" $t "*) ;;
    *) echo "error: no fuzz target '$t' (targets: $all_targets)" >&2; exit 2 ;;
    esac
done

# The core's config.h comes from configure.
[ -f build/config.h ] || scripts/build.sh >/dev/null
# shellcheck disable=SC2086
build $targets
failed=0
for t in $targets; do
    case $mode in
    replay) replay_target "$t" || failed=1 ;;
    run) run_target "$t" "$seconds" || failed=1 ;;
    minimize) minimize_target "$t" || failed=1 ;;
    esac
done
exit $failed
