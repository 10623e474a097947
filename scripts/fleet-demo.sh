#!/bin/bash
# Fleet mode on one machine: starts a PostgreSQL server, two Apache
# receivers (direct mode: each 202 is a commit in the database) and two
# hrflow-worker processes, sends signed events to both receivers, shows
# which worker ran each, and stops everything on exit.  Nothing of the
# system's own PostgreSQL or Apache is touched: everything lives in a
# scratch folder, on 127.0.0.1 and free ports.
#   scripts/fleet-demo.sh            (HRFLOW_DEMO_KEEP=1: keep the folder)
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
scripts/deps.sh build test run
scripts/build.sh

httpd=$(grep -E '^HTTPD_BIN' build/Makefile | sed 's/^HTTPD_BIN = //')
modules=$(grep -E '^HTTPD_LIBEXECDIR' build/Makefile | sed 's/^HTTPD_LIBEXECDIR = //')
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -t/ -k4 -n | tail -n 1)
worker_bin="$top/build/tools/hrflow-worker"
hrflowctl="$top/build/tools/hrflowctl"

# PostgreSQL refuses to run as root: as root, the server runs as postgres
# and Apache's children and the workers as www-data.
as_postgres=()
as_www=()
user_lines=""
if [ "$(id -u)" -eq 0 ]; then
    # setpriv execs the program itself: $! is the worker's own pid.
    as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
    as_www=(setpriv --reuid=www-data --regid=www-data --init-groups)
    user_lines=$'User www-data\nGroup www-data'
fi

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

demo=$(mktemp -d /tmp/hrflow-fleet-demo-XXXXXX)
chmod 755 "$demo"
# A copy the workers' user can run: the checkout may sit in a folder only
# root can enter.
install -m 755 "$worker_bin" "$demo/hrflow-worker"
worker_bin="$demo/hrflow-worker"
sign="$top/scripts/sign.sh"
# PostgreSQL's tools, run as postgres, start where they are started: in a
# folder they can enter.
cd "$demo"
pids=()
stop_all() {
    set +e
    cd /
    # The workers first: they finish and record what they run while the
    # database is still there (10 s at most each, then kill -9).
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
    done
    for r in a b; do
        [ -f "$demo/$r/httpd.pid" ] && "$httpd" -f "$demo/$r/httpd.conf" -k stop
    done
    [ -f "$demo/pg/data/postmaster.pid" ] && \
        "${as_postgres[@]}" "$pgbin/pg_ctl" -D "$demo/pg/data" -m fast -w stop >/dev/null
    wait 2>/dev/null
    if [ -n "${HRFLOW_DEMO_KEEP:-}" ]; then
        echo "kept: $demo"
    else
        rm -rf "$demo"
    fi
}
trap stop_all EXIT

echo "== PostgreSQL in $demo/pg"
mkdir -p "$demo/pg"
[ "$(id -u)" -eq 0 ] && chown postgres: "$demo/pg"
chmod 700 "$demo/pg"
pg_port=$(free_port)
# Passwords live in files (never on a command line): the superuser's for
# initdb, the receivers' and workers' for HrflowQueuePasswordFile.
(umask 077 && openssl rand -hex 16 > "$demo/pg/admin.password")
[ "$(id -u)" -eq 0 ] && chown postgres: "$demo/pg/admin.password"
(umask 077 && openssl rand -hex 16 > "$demo/queue.password")
[ "$(id -u)" -eq 0 ] && chown www-data: "$demo/queue.password"
"${as_postgres[@]}" "$pgbin/initdb" -D "$demo/pg/data" -U postgres \
    --pwfile="$demo/pg/admin.password" --auth=scram-sha-256 \
    -E UTF8 --locale=C >/dev/null
cat >> "$demo/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = ''
fsync = on
synchronous_commit = on
CONF
"${as_postgres[@]}" "$pgbin/pg_ctl" -D "$demo/pg/data" -l "$demo/pg/server.log" \
    -w start >/dev/null
psql_admin() {
    PGPASSWORD=$(cat "$demo/pg/admin.password") psql -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres "$@"
}
psql_admin -c "CREATE ROLE hrflow LOGIN PASSWORD '$(cat "$demo/queue.password")'" \
    -c "CREATE DATABASE hrflow OWNER hrflow"
url="postgresql://hrflow@127.0.0.1:$pg_port/hrflow"
PGPASSWORD=$(cat "$demo/queue.password") "$hrflowctl" init "$url"
echo "queue: $url"

# The handler names the worker that ran it (its parent) and the event.
mkdir -p "$demo/handlers"
cat > "$demo/handlers/show.sh" <<'SH'
#!/bin/sh
# Demo handler: one line per run in LOG, then a short nap.
cat > /dev/null
printf '%s worker=%s %s key=%s delivery=%s attempt=%s\n' \
    "$(date +%T.%N | cut -c1-12)" "$PPID" "$HRFLOW_TYPE" \
    "${HRFLOW_PROFILE_KEY:-$HRFLOW_JOB_KEY}" "$HRFLOW_DELIVERY_ID" \
    "$HRFLOW_ATTEMPT" >> "$1"
sleep 0.2
SH
chmod 755 "$demo/handlers" "$demo/handlers/show.sh"
mkdir -p "$demo/log"
chmod 1777 "$demo/log"
handler="$demo/handlers/show.sh $demo/log/runs.log"
(umask 077 && openssl rand -hex 16 > "$demo/hrflow.secret")

declare -A port
for r in a b; do
    port[$r]=$(free_port)
    mkdir -p "$demo/$r/run"
    cat > "$demo/$r/httpd.conf" <<CONF
ServerRoot $demo/$r
ServerName 127.0.0.1
Listen 127.0.0.1:${port[$r]}
PidFile $demo/$r/httpd.pid
DefaultRuntimeDir $demo/$r/run
ErrorLog $demo/$r/error.log
LogLevel warn hrflow:info
LoadModule mpm_event_module $modules/mod_mpm_event.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule hrflow_module $top/build/mod_hrflow.so
$user_lines
HrflowQueue $url
HrflowQueuePasswordFile $demo/queue.password
HrflowWorker off
<Location /hrflow>
    SetHandler hrflow-webhook
    HrflowSecretFile $demo/hrflow.secret
    HrflowHandler * $handler
</Location>
<Location /health>
    SetHandler hrflow-health
</Location>
CONF
    "$httpd" -t -f "$demo/$r/httpd.conf"
    "$httpd" -f "$demo/$r/httpd.conf" -k start
    echo "receiver $r: http://127.0.0.1:${port[$r]}/hrflow"
done

declare -A worker_name
for w in 1 2; do
    mkdir -p "$demo/worker$w"
    cat > "$demo/worker$w/worker.conf" <<CONF
HrflowQueue $url
HrflowQueuePasswordFile $demo/queue.password
HrflowConcurrency 2
HrflowHandler * $handler
CONF
    chmod 755 "$demo/worker$w"
    [ "$(id -u)" -eq 0 ] && chown www-data: "$demo/worker$w/worker.conf"
    "${as_www[@]}" "$worker_bin" --config "$demo/worker$w/worker.conf" \
        >"$demo/worker$w/worker.log" 2>&1 &
    pids+=($!)
    worker_name[$!]=worker$w
done
sleep 0.5
for r in a b; do
    for _ in $(seq 50); do
        curl -sf -o /dev/null "http://127.0.0.1:${port[$r]}/health" && break
        sleep 0.1
    done
done

echo
echo "== signed events, to both receivers in turn"
n=0
for key in alice bob alice carol alice bob; do
    n=$((n + 1))
    r=$([ $((n % 2)) -eq 1 ] && echo a || echo b)
    event="{\"type\":\"profile.parsing.success\",\"message\":\"event $n\",\"profile\":{\"key\":\"$key\"}}"
    printf 'receiver %s, profile %-6s -> ' "$r" "$key"
    curl -sS -X POST "http://127.0.0.1:${port[$r]}/hrflow" \
        -H "HTTP-HRFLOW-SIGNATURE: $(printf '%s' "$event" | "$sign" "$demo/hrflow.secret")"
    echo
done

echo
echo "== which worker ran each (alice's three run one at a time, in order)"
runs() { cat "$demo/log/runs.log" 2>/dev/null | wc -l; }
for _ in $(seq 100); do
    [ "$(runs)" -ge 6 ] && break
    sleep 0.1
done
if [ "$(runs)" -lt 6 ]; then
    echo "only $(runs) of 6 ran; the workers' logs:"
    cat "$demo"/worker*/worker.log
fi
touch "$demo/log/runs.log"
sleep 0.5       # each handler naps a little after its line
while read -r line; do
    pid=$(echo "$line" | sed -E 's/.* worker=([0-9]+) .*/\1/')
    echo "${line/worker=$pid/${worker_name[$pid]:-worker pid $pid}}"
done < "$demo/log/runs.log"
echo
echo "== the queue (hrflowctl list $url)"
PGPASSWORD=$(cat "$demo/queue.password") "$hrflowctl" list "$url" || true
echo
echo "stopping PostgreSQL, both receivers and both workers"
