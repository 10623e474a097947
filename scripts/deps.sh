#!/bin/bash
# Installs the Debian packages mod_hrflow needs that are missing.
#   scripts/deps.sh          build, test and run
#   scripts/deps.sh bench    also what the benchmarks use
set -eu

packages="autoconf automake libtool pkg-config make gcc \
apache2 apache2-dev libapr1-dev libaprutil1-dev libjson-c-dev libssl-dev uuid-dev \
check valgrind clang python3 python3-pytest curl openssl"
[ "${1:-}" = bench ] && packages="$packages wrk webhook"

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "error: these Debian packages are missing:$missing" >&2
    echo "run this script as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts the packaged server on install; ours run on their own ports.
if command -v apache2ctl >/dev/null && [ -d /run/systemd/system ]; then
    :
elif pgrep -x apache2 >/dev/null 2>&1; then
    apache2ctl stop >/dev/null 2>&1 || true
fi
