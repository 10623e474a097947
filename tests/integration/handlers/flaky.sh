#!/bin/sh
# Test handler: fails its first two tries, then succeeds; logs each try.
echo "$HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT $(date +%s.%N)" >> "$1/flaky.log"
[ "$HRFLOW_ATTEMPT" -ge 3 ] || { echo "not yet (try $HRFLOW_ATTEMPT)"; exit 1; }
