#!/bin/sh
# Example handler: appends one line per event to the file given as argument
# (default: events.log in the working directory, the handler's own).
#   HrflowHandler * /usr/share/mod_hrflow/handlers/log-event.sh /var/log/hrflow/events.log
log="${1:-events.log}"
cat > /dev/null   # the event's JSON is on standard input; not needed here
printf '%s %s type=%s profile=%s job=%s delivery=%s signature=%s\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HRFLOW_EVENT_ID" "$HRFLOW_TYPE" \
    "${HRFLOW_PROFILE_KEY:--}" "${HRFLOW_JOB_KEY:--}" "$HRFLOW_DELIVERY_ID" \
    "$HRFLOW_SIGNATURE" >> "$log" || exit 1
echo "logged $HRFLOW_TYPE to $log"
