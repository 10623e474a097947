#!/bin/sh
# Test handler: reads its event, complains, fails.
cat > /dev/null
echo "cannot process $HRFLOW_TYPE" >&2
exit 3
