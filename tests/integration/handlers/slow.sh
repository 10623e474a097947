#!/bin/sh
# Test handler: starts a child, ignores TERM, never finishes on its own.
out="$1"
sleep 300 &
echo $$ $! > "$out/slow.pids"
trap '' TERM
sleep 300
