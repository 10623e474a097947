#!/bin/sh
# The fleet benchmarks' handler: a start and an end line per run, with the
# event's key and message (unique per event), appended to $1.  Two starts
# of one key without the end between them are an overlap.
echo "s $HRFLOW_PROFILE_KEY $HRFLOW_MESSAGE" >> "$1"
echo "e $HRFLOW_PROFILE_KEY $HRFLOW_MESSAGE" >> "$1"
