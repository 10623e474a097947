#!/bin/bash
# Installs the Debian packages mod_hrflow needs that are missing.
#   scripts/deps.sh              build and test (what scripts/test.sh runs)
#   scripts/deps.sh build        compile: autotools, gcc, the -dev packages
#   scripts/deps.sh test         run every test: apache2, Check, valgrind,
#                                clang (libFuzzer), pytest, man-db, lighttpd,
#                                suEXEC, the Debian packaging tools, the
#                                PostgreSQL server (fleet mode's tests),
#                                php-fpm and ModSecurity (gateway mode's
#                                tests, which load ModSecurity in their own
#                                servers: its package enables it in
#                                /etc/apache2, and this script disables it
#                                there again)
#   scripts/deps.sh run          a production host: Apache and the shared
#                                libraries the module loads (libpq
#                                included), and the PostgreSQL server that
#                                scripts/fleet-demo.sh starts
#   scripts/deps.sh bench        the benchmarks: wrk, webhook, php-fpm
# Several may be named: `scripts/deps.sh build run`.  With --print first,
# prints the packages those needs take, installed or not, and stops.
#
# A service a package would start on install (Apache, lighttpd, PostgreSQL,
# php-fpm) is not started: this script never starts or stops a server, so
# one already running is left as it is, and none appears on ports the tests
# use.  The fleet tests and scripts/fleet-demo.sh start PostgreSQL servers
# of their own, in scratch folders.
set -eu

build="autoconf automake libtool pkg-config make gcc \
apache2-dev libapr1-dev libaprutil1-dev libjson-c-dev libssl-dev uuid-dev \
libpq-dev"
test="apache2 check valgrind clang python3 python3-pytest curl openssl \
man-db groff-base binutils lighttpd apache2-suexec-pristine \
debhelper dpkg-dev fakeroot lintian devscripts git php-fpm \
libapache2-mod-security2"
bench="wrk webhook php-fpm"

# The first of these names this release's apt knows: the libraries' run
# packages were renamed across Debian releases (64-bit time_t).
first_known() {
    local p
    for p in "$@"; do
        if apt-cache show --no-all-versions "$p" >/dev/null 2>&1; then
            echo "$p"
            return
        fi
    done
    echo "$1"
}

# Debian names the server after its major version: 15 where this project
# is tested (bookworm), the release's own elsewhere.
server_package() {
    first_known postgresql-15 postgresql
}

run_packages() {
    echo apache2 \
        "$(first_known libjson-c5 libjson-c4)" \
        "$(first_known libssl3t64 libssl3)" \
        libpq5 "$(server_package)"
}

print=no
if [ "${1:-}" = --print ]; then
    print=yes
    shift
fi
[ $# -eq 0 ] && set -- build test
packages=""
for need in "$@"; do
    case $need in
    build) packages="$packages $build" ;;
    test) packages="$packages $test $(server_package)" ;;
    run) packages="$packages $(run_packages)" ;;
    bench) packages="$packages $bench $(server_package)" ;;
    *)
        echo "usage: scripts/deps.sh [build|test|run|bench]..." >&2
        exit 2 ;;
    esac
done

if [ "$print" = yes ]; then
    echo $packages
    exit 0
fi

missing=""
for p in $packages; do
    case " $missing " in *" $p "*) continue ;; esac
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

# Debian starts a server's service when its package is installed.
# invoke-rc.d and deb-systemd-invoke ask /usr/sbin/policy-rc.d first: 101
# means "not now".  One the administrator put there is theirs, left alone,
# a symlink to nowhere included (never written through); noclobber makes
# the file new or nothing, should one appear meanwhile.
policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}     # another path: for tests
if [ ! -e "$policy" ] && [ ! -L "$policy" ] \
   && (set -C; printf '#!/bin/sh\n# scripts/deps.sh: no service starts during its install\nexit 101\n' \
        >"$policy") 2>/dev/null; then
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

# ModSecurity's package enables it (and unique_id) in the system's Apache;
# the tests only load it in servers of their own.  What was not enabled
# before is disabled again after.
enabled_after=""
case " $missing " in
*" libapache2-mod-security2 "*)
    for m in security2 unique_id; do
        [ -e "/etc/apache2/mods-enabled/$m.load" ] \
            || enabled_after="$enabled_after $m"
    done ;;
esac

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
if [ -n "$enabled_after" ] && command -v a2dismod >/dev/null; then
    # shellcheck disable=SC2086
    a2dismod -q -f $enabled_after >/dev/null
fi
case " $missing " in
*" apache2 "*)
    echo "apache2 was installed and not started: systemctl start apache2" \
         "when wanted" ;;
esac
