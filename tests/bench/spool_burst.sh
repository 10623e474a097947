#!/bin/bash
# Durable mode against the webhook package (see spool_burst.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../../scripts/deps.sh" bench
HRFLOW_BUILD_DIR=${HRFLOW_BUILD_DIR:-$here/../../build} exec /usr/bin/python3 "$here/spool_burst.py" "$@"
