#!/bin/sh
# Test handler: prints one line of 100000 characters and fails.
head -c 100000 /dev/zero | tr '\0' x
echo
exit 1
