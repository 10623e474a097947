#!/bin/sh
# Test handler: keeps the environment and standard input of each run.
out="$1"
env -0 > "$out/$HRFLOW_DELIVERY_ID.env"
cat > "$out/$HRFLOW_DELIVERY_ID.json"
printf '%s %s %s\n' "$HRFLOW_EVENT_INDEX" "$HRFLOW_TYPE" "$HRFLOW_DELIVERY_ID" >> "$out/order.log"
pwd > "$out/$HRFLOW_DELIVERY_ID.cwd"
echo "recorded $HRFLOW_TYPE"
