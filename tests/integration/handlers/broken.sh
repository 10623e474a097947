#!/bin/sh
# Test handler: fails with status 7 until the file $1/fixed exists.
echo "$HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT" >> "$1/broken.log"
[ -e "$1/fixed" ] && exit 0
echo "boom: the database is down"
exit 7
