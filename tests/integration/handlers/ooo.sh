#!/bin/sh
# Test handler: fleet.sh under a program name of its own (a worker runs an
# event only through a program it names).
exec "$(dirname "$0")/fleet.sh" "$@"
