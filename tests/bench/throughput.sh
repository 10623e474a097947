#!/bin/bash
# Throughput of the webhook endpoint against a static file (see throughput.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../../scripts/deps.sh" bench
HRFLOW_BUILD_DIR=${HRFLOW_BUILD_DIR:-$here/../../build} exec /usr/bin/python3 "$here/throughput.py" "$@"
