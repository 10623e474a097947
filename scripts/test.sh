#!/bin/bash
# Every test: installs what is missing, builds, runs the C unit tests, the
# same under valgrind, make distcheck, the fuzzer, the integration tests
# against a real httpd under the event, worker and prefork MPMs, fleet
# mode's tests against PostgreSQL servers of their own, the Debian
# packages, and again against a build with ASan and UBSan (event, prefork,
# fleet mode).  Ends with "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
scripts/deps.sh || exit 1
scripts/build.sh || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

echo "== unit tests (Check)"
(cd build && make -j"$(nproc)" check >/dev/null 2>&1)
for log in build/tests/unit/test_*.log; do
    line=$(grep -E '^[0-9]+%: Checks:' "$log" | tail -n 1)
    echo "$(basename "$log" .log): ${line:-did not finish}"
    [ -n "$line" ] || { count 0 1; continue; }
    checks=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    bad=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/')
    bad=$(( bad ))
    count $((checks - bad)) "$bad"
    grep -E ':[FE]:' "$log"
done

echo "== unit tests under valgrind"
for t in build/tests/unit/test_*; do
    case "$t" in *.log|*.trs|*.o) continue ;; esac
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if CK_FORK=no build/libtool --mode=execute valgrind -q --error-exitcode=99 \
        --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite "$t" >"build/$name.valgrind" 2>&1; then
        echo "$name: valgrind clean"
        count 1 0
    else
        echo "$name: valgrind FAILED"
        # valgrind 3.19 does not know pidfd_open (434); hf_run falls back.
        grep -v -e 'syscall: 434' -e 'your own handler' -e 'README_MISSING' \
            -e 'consider this a bug' -e 'valgrind.org/support' \
            "build/$name.valgrind" | tail -n 40
        count 0 1
    fi
done

# The release tarball builds, passes its unit tests, installs under its own
# prefix and uninstalls cleanly, and nothing outside its tree changes: not
# the live Apache's configuration or modules (distcheck runs as root here,
# where a missing DESTDIR or prefix would write into them).  One check.
echo "== make distcheck"
stamp=$(mktemp "${HRFLOW_TEST_TMP:-/tmp}/hrflow-distcheck-XXXXXX")
if (cd build && make distcheck) >build/distcheck.log 2>&1; then
    outside=$(find /etc/apache2 /usr/lib/apache2/modules /usr/local \
        -newer "$stamp" -name '*hrflow*' 2>/dev/null)
    if [ -z "$outside" ]; then
        echo "distcheck: passed, nothing outside its tree changed"
        count 1 0
    else
        echo "distcheck: FAILED, it changed files outside its tree:"
        echo "$outside"
        count 0 1
    fi
else
    echo "distcheck: FAILED"
    tail -n 40 build/distcheck.log
    count 0 1
fi
rm -f "$stamp"

# One pass or failure per fuzz target and mode, from fuzz.sh's own lines.
count_fuzz() {
    local log=$1 line
    if ! grep -qE '^fuzz_[a-z]+: ' "$log"; then
        echo "fuzz targets: did not build"; tail -n 20 "$log"
        count 0 1
        return
    fi
    grep -vE '^ *#[0-9]+ ' "$log"
    while read -r line; do
        case $line in
        *": FAILED"*) count 0 1 ;;
        *) count 1 0 ;;
        esac
    done < <(grep -E '^fuzz_[a-z]+: ' "$log")
}

echo "== fuzz targets: every saved input replayed (libFuzzer, ASan, UBSan)"
scripts/fuzz.sh replay >build/fuzz.log 2>&1
count_fuzz build/fuzz.log
# Fresh fuzzing is not deterministic: only when asked, e.g. 4 s a target.
if [ "${HRFLOW_FUZZ_SECONDS:-0}" -gt 0 ]; then
    echo "== fuzz targets: ${HRFLOW_FUZZ_SECONDS} s of fresh fuzzing each"
    scripts/fuzz.sh run "$HRFLOW_FUZZ_SECONDS" >build/fuzz-run.log 2>&1
    count_fuzz build/fuzz-run.log
fi

# One run of the integration suite (or of HRFLOW_TEST_PATHS): pytest's
# failures and summary, its counts from the JUnit report.
#   LABEL BUILD_DIR [VAR=VALUE...]   ($skip: more pytest options)
skip=""
integration() {
    local label=$1 dir=$2 xml="$top/$2/integration-$1.xml" start=$SECONDS
    shift 2
    echo "== integration tests, $label (real httpd)"
    env HRFLOW_BUILD_DIR="$top/$dir" "$@" /usr/bin/python3 -m pytest \
        -p no:cacheprovider -q -rfE ${HRFLOW_TEST_PATHS:-tests/integration} \
        $skip --junitxml="$xml" \
        2>&1 | grep -E '^(FAILED|ERROR) | (passed|failed|error|skipped)' | tail -n 30
    set -- $(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); sys.exit()
s = root if root.tag == "testsuite" else root.find("testsuite")
n, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(n - f - e - k, f + e)
PY
)
    count "$1" "$2"
    echo "$label: $((SECONDS - start)) s"
}

# Fleet mode's tests (PostgreSQL servers of their own, receivers and
# workers) run in passes of their own; the queue's Apache side also under
# prefork, whose processes each hold a connection.
fleet=$(ls tests/integration/test_fleet*.py tests/integration/test_queue_*.py \
    tests/integration/test_worker_conf.py)
not_fleet=""
for f in $fleet; do not_fleet="$not_fleet --ignore=$f"; done
# Tests whose subject does not depend on the MPM (packaging, tools, the
# CGI's tarball, man pages) run in the default MPM's passes only.
same_in_every_mpm=""
for f in test_deps test_dist_cgi test_install test_man test_release \
         test_sign_tools test_symbols test_conf; do
    same_in_every_mpm="$same_in_every_mpm --ignore=tests/integration/$f.py"
done

# Every integration test under each MPM, the default (event) first.
skip="$not_fleet" integration event build HRFLOW_MPM=event
for mpm in worker prefork; do
    skip="$not_fleet $same_in_every_mpm" integration "$mpm" build \
        HRFLOW_MPM="$mpm"
done
HRFLOW_TEST_PATHS="$fleet" integration fleet build HRFLOW_MPM=event
HRFLOW_TEST_PATHS=tests/integration/test_queue_module.py \
    integration fleet-prefork build HRFLOW_MPM=prefork

# Once: the Debian packages built from a copy of the source and checked by
# lintian; as root also installed, driven in a copy of /etc/apache2, purged.
HRFLOW_TEST_PATHS=tests/packages integration packages build

# Again against a module, CGI and worker built with ASan and UBSan, httpd
# started with their runtimes preloaded: any report fails the run.  Event
# (the default, threaded like worker) and prefork; fleet mode's Apache
# side and workers once.
echo "== building with AddressSanitizer and UBSan"
if scripts/build.sh asan >build/asan-build.log 2>&1; then
    reports=$(mktemp -d "${HRFLOW_TEST_TMP:-/tmp}/hrflow-sanitizer-XXXXXX")
    chmod 1777 "$reports"
    asan="HRFLOW_SANITIZE=1 HRFLOW_SANITIZER_LOGS=$reports"
    skip="$not_fleet" integration asan-event build-asan $asan \
        HRFLOW_MPM=event
    skip="$not_fleet $same_in_every_mpm" integration asan-prefork \
        build-asan $asan HRFLOW_MPM=prefork
    HRFLOW_TEST_PATHS="tests/integration/test_fleet.py
tests/integration/test_queue_module.py tests/integration/test_worker_conf.py" \
        integration asan-fleet build-asan $asan HRFLOW_MPM=event
    if [ -z "$(ls -A "$reports")" ]; then
        echo "sanitizer reports: none"
        count 1 0
        rm -rf "$reports"
    else
        echo "sanitizer reports: FOUND, kept in $reports"
        head -n 40 "$reports"/*
        count 0 1
    fi
else
    echo "asan build: FAILED"
    tail -n 40 build/asan-build.log
    count 0 1
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
