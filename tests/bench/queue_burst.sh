#!/bin/bash
# Fleet mode against durable mode: 202/s, accept latency, handler runs/s
# with 1, 2 and 4 workers, each run checked (see queue_burst.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../../scripts/deps.sh" bench
HRFLOW_BUILD_DIR=${HRFLOW_BUILD_DIR:-$here/../../build} exec /usr/bin/python3 "$here/queue_burst.py" "$@"
