#!/bin/sh
# The benchmark's handler, for both receivers: one line per run.
echo "run ${HRFLOW_DELIVERY_ID:-}" >> "$1"
