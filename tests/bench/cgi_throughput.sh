#!/bin/bash
# Throughput of hrflow.cgi, as built by default and with --enable-static-cgi,
# against a trivial C CGI (see cgi_throughput.py).
#   tests/bench/cgi_throughput.sh [SECONDS] [CONNECTIONS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${HRFLOW_BUILD_DIR:-$top/build}
"$top/scripts/deps.sh" bench
static="$build/bench-static-cgi"
if [ -z "${HRFLOW_STATIC_CGI:-}" ]; then
    mkdir -p "$static"
    (cd "$static" && { [ -f Makefile ] || "$top/configure" -q --disable-module \
        --enable-static-cgi; } && make -s cgi/hrflow.cgi >/dev/null)
    export HRFLOW_STATIC_CGI="$static/cgi/hrflow.cgi"
fi
HRFLOW_BUILD_DIR=$build exec /usr/bin/python3 "$here/cgi_throughput.py" "$@"
