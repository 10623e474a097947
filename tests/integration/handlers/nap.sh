#!/bin/sh
# Test handler: notes that it started ("started DELIVERY_ID" in OUT/naps.log),
# then sleeps SECONDS.  Usage: nap.sh OUT SECONDS
echo "started $HRFLOW_DELIVERY_ID" >> "$1/naps.log"
exec sleep "$2"
