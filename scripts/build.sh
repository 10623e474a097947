#!/bin/bash
# Configures and builds (warnings are errors here).
#   scripts/build.sh          ./build, the test build
#   scripts/build.sh asan     ./build-asan: the module, hrflow.cgi and
#                             hrflowctl with AddressSanitizer and UBSan
# CONFIGURE_FLAGS adds configure options on the first run.
set -eu
cd "$(dirname "$0")/.."
variant=${1:-}
[ -x configure ] && [ configure -nt configure.ac ] && [ -f Makefile.in ] \
    || ./autogen.sh >/dev/null 2>&1
case "$variant" in
"")
    dir=build
    flags=() ;;
asan)
    # gcc: its libasan is the runtime preloaded into the uninstrumented
    # apache2 by the tests (the module cannot bring its own).
    dir=build-asan
    san="-fsanitize=address,undefined -fno-sanitize-recover=all"
    flags=(CC=gcc "CFLAGS=-g -O1 -fno-omit-frame-pointer $san"
           "LDFLAGS=$san") ;;
*)
    echo "usage: scripts/build.sh [asan]" >&2
    exit 2 ;;
esac
mkdir -p "$dir"
cd "$dir"
# shellcheck disable=SC2086
[ -f Makefile ] || ../configure --enable-werror ${CONFIGURE_FLAGS:-} \
    "${flags[@]}" >/dev/null
make -j"$(nproc)" >/dev/null
if [ -z "$variant" ]; then
    # The benchmark programs are not installed, but must keep building.
    make -j"$(nproc)" tests/bench/spawn_bench tests/bench/trivial_backend >/dev/null
fi
echo "built: $(pwd)/mod_hrflow.so"
