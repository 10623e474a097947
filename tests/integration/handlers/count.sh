#!/bin/sh
# Test handler: one line per run, "DELIVERY_ID ATTEMPT PROFILE_KEY", appended.
echo "$HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT $HRFLOW_PROFILE_KEY" >> "$1/ran.log"
