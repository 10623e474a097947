#!/bin/sh
# Example handler: fetches nothing, shows every variable it was given and the
# event's JSON.  Its output lands in Apache's error log, tagged with the
# event id (LogLevel hrflow:info to see it for events that succeed).
echo "variables:"
env | grep '^HRFLOW_' | sort | sed 's/^/  /'
echo "standard input:"
sed 's/^/  /'
echo
