#!/bin/sh
# Test handler: logs start and end of each run, sleeping between.
echo "start $HRFLOW_PROFILE_KEY $HRFLOW_MESSAGE $(date +%s.%N)" >> "$1/ordered.log"
sleep "${2:-0.3}"
echo "end $HRFLOW_PROFILE_KEY $HRFLOW_MESSAGE $(date +%s.%N)" >> "$1/ordered.log"
