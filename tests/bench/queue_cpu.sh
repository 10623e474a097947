#!/bin/bash
# The worker's CPU per event with 1k and with 100k events queued (see
# queue_cpu.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../../scripts/deps.sh" bench
HRFLOW_BUILD_DIR=${HRFLOW_BUILD_DIR:-$here/../../build} exec /usr/bin/python3 "$here/queue_cpu.py" "$@"
