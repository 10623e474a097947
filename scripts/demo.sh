#!/bin/bash
# The quick start: installs what is missing, builds, starts Apache on
# 127.0.0.1 with the module and the example handlers, and sends it a signed
# sample event.  The server keeps running; the script says how to stop it.
#   scripts/demo.sh [PORT]        (default 8080)
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
port=${1:-8080}
scripts/deps.sh
scripts/build.sh

demo="$top/build/demo"
httpd=$(grep -E '^HTTPD_BIN' build/Makefile | sed 's/^HTTPD_BIN = //')
modules=$(grep -E '^HTTPD_LIBEXECDIR' build/Makefile | sed 's/^HTTPD_LIBEXECDIR = //')
[ -f "$demo/httpd.pid" ] && "$httpd" -f "$demo/httpd.conf" -k stop 2>/dev/null && sleep 1
rm -rf "$demo"
mkdir -p "$demo/run"
# The server's children run as www-data when started by root: handlers and
# their log live where that user can reach them.
share=/tmp/hrflow-demo
rm -rf "$share"
mkdir -p "$share/log"
cp conf/handlers/*.sh "$share/"
chmod 755 "$share" "$share"/*.sh
chmod 1777 "$share/log"
# The secret lives in a file (root reads it at startup): never on a command
# line, where ps and shell history show it.
secret_file="$demo/hrflow.secret"
(umask 077 && openssl rand -hex 16 > "$secret_file")
wrong_file="$demo/wrong.secret"
(umask 077 && echo wrong-secret > "$wrong_file")
user_lines=""
[ "$(id -u)" -eq 0 ] && user_lines=$'User www-data\nGroup www-data'

cat > "$demo/httpd.conf" <<CONF
ServerRoot $demo
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile $demo/httpd.pid
DefaultRuntimeDir $demo/run
ErrorLog $demo/error.log
LogLevel warn hrflow:info
LogFormat "%h %t \"%r\" %>s %{HRFLOW_TYPE}e %{HRFLOW_EVENT_ID}e" hrflow
CustomLog $demo/access.log hrflow
LoadModule mpm_event_module $modules/mod_mpm_event.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule hrflow_module $top/build/mod_hrflow.so
$user_lines
<Location /hrflow>
    SetHandler hrflow-webhook
    HrflowSecretFile $secret_file
    HrflowHandler profile.* $share/show-env.sh
    HrflowHandler * $share/log-event.sh $share/log/events.log
</Location>
CONF

"$httpd" -t -f "$demo/httpd.conf"
"$httpd" -f "$demo/httpd.conf" -k start
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
done

event='{"type":"profile.parsing.success","origin":"api","message":"profile parsing succeed","profile":{"key":"d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d","source":{"key":"d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"}}}'
job='{"type":"job.storing.update","origin":"api","message":"job storing update","job":{"key":"f1e2","board":{"key":"b0a1"}}}'

echo
echo "== a signed profile event, as HrFlow sends it"
curl -sS -i -X POST "http://127.0.0.1:$port/hrflow" \
    -H "HTTP-HRFLOW-SIGNATURE: $(printf '%s' "$event" | scripts/sign.sh "$secret_file")"
echo
echo "== a signed job event"
curl -sS -X POST "http://127.0.0.1:$port/hrflow" \
    -H "HTTP-HRFLOW-SIGNATURE: $(printf '%s' "$job" | scripts/sign.sh "$secret_file")"
echo
echo "== a forged one"
curl -sS -X POST "http://127.0.0.1:$port/hrflow" \
    -H "HTTP-HRFLOW-SIGNATURE: $(printf '%s' "$job" | scripts/sign.sh "$wrong_file")"
sleep 0.3
echo
echo "== what the handlers did ($demo/error.log, $share/log/events.log)"
grep 'hrflow:' "$demo/error.log" | sed -E 's/^\[[^]]*\] //; s/\[pid [^]]*\] //; s/\[client [^]]*\] //'
cat "$share/log/events.log"
echo
echo "Apache is running on http://127.0.0.1:$port/hrflow with the secret in $secret_file"
echo "send your own:  curl -X POST http://127.0.0.1:$port/hrflow \\"
echo "                  -H \"HTTP-HRFLOW-SIGNATURE: \$(scripts/sign.sh $secret_file < event.json)\""
echo "stop it:        $httpd -f $demo/httpd.conf -k stop"
