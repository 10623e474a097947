#!/bin/bash
# The spool dispatcher's CPU per event, 1k against 100k queued (see
# dispatch_cpu.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${HRFLOW_BUILD_DIR:-$here/../../build}
make -C "$build" tests/bench/dispatch_cpu >/dev/null
HRFLOW_BUILD_DIR=$build exec /usr/bin/python3 "$here/dispatch_cpu.py" "$@"
