#!/bin/bash
# The 202 rate and p99 latency of a durable spool, alone and beside a writer
# (see spool_latency.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../../scripts/deps.sh" bench
exec /usr/bin/python3 "$here/spool_latency.py" "$@"
