#!/bin/bash
# Gateway mode (HrflowVerify on) in front of mod_proxy_http and php-fpm,
# against the same applications without it (see gateway.py), then the
# memory of a 1 MiB body verified and replayed (see gateway_memory.py).
#   tests/bench/gateway.sh [SECONDS] [CONNECTIONS] [ROUNDS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${HRFLOW_BUILD_DIR:-$here/../../build}
"$here/../../scripts/deps.sh" bench
make -s -C "$build" tests/bench/trivial_backend >/dev/null
export HRFLOW_BUILD_DIR=$build
/usr/bin/python3 "$here/gateway.py" "$@"
exec /usr/bin/python3 "$here/gateway_memory.py"
