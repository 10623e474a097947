#!/bin/sh
# Test handler for fleet mode: logs the start and the end of each run,
#   start|end KEY MESSAGE DELIVERY_ID ATTEMPT PARENT PID TIME
# (its parent: the worker that ran it) in OUT/fleet.log, sleeping between:
# SECONDS, or FIRST_SECONDS on the first try when given.
#   fleet.sh OUT SECONDS [FIRST_SECONDS]
seconds=$2
[ "$HRFLOW_ATTEMPT" = 1 ] && [ -n "$3" ] && seconds=$3
run="$HRFLOW_PROFILE_KEY $HRFLOW_MESSAGE $HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT $PPID $$"
echo "start $run $(date +%s.%N)" >> "$1/fleet.log"
sleep "$seconds"
echo "end $run $(date +%s.%N)" >> "$1/fleet.log"
