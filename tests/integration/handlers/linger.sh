#!/bin/sh
# Test handler: its first try starts a child and waits for it (to be killed
# with its dispatcher); later tries succeed.  Logs "DELIVERY ATTEMPT what".
echo "$HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT start" >> "$1/linger.log"
if [ "$HRFLOW_ATTEMPT" = 1 ]; then
    sleep 300 &
    echo $$ $! > "$1/linger.pids"
    wait
fi
echo "$HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT ok" >> "$1/linger.log"
