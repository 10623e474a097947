#!/bin/bash
# Configures and builds in ./build (warnings are errors here).
set -eu
cd "$(dirname "$0")/.."
[ -x configure ] && [ configure -nt configure.ac ] && [ -f Makefile.in ] \
    || ./autogen.sh >/dev/null 2>&1
mkdir -p build
cd build
[ -f Makefile ] || ../configure --enable-werror ${CONFIGURE_FLAGS:-} >/dev/null
make -j"$(nproc)" >/dev/null
# The benchmark programs are not installed, but must keep building.
make -j"$(nproc)" tests/bench/spawn_bench >/dev/null
echo "built: $(pwd)/mod_hrflow.so"
