#!/bin/sh
# Test handler: takes the spool's storage away as the server's user could
# (a full or read-only disk), then succeeds or fails.  $3 says how:
#   run    run/ read-only, then success (the success cannot leave run/)
#   retry  tmp/ and retry/ read-only, then failure on the first try (the
#          retry cannot be written), success on later ones
echo "$HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT" >> "$1/lockout.log"
case "$3" in
run) chmod 0500 "$2/run"; exit 0 ;;
retry) [ "$HRFLOW_ATTEMPT" -gt 1 ] && exit 0
       chmod 0500 "$2/tmp" "$2/retry"; exit 1 ;;
esac
