#!/bin/bash
# Prints an HTTP-HRFLOW-SIGNATURE value for an event, in the form HrFlow
# sends: base64url(HMAC-SHA256(secret, json)).base64url(json)
#   scripts/sign.sh SECRET_FILE [EVENT_FILE]       (event on stdin if none)
#   scripts/sign.sh - EVENT_FILE                   (secret on stdin)
#   curl -H "HTTP-HRFLOW-SIGNATURE: $(scripts/sign.sh hrflow.secret < ev.json)" \
#        -X POST URL
# SECRET_FILE is in HrflowSecretFile's format (one secret per line, blank
# and '#' lines skipped; the first is used): the module's own secret file
# works.  The secret is never a command-line argument, of this script or of
# the programs it runs: ps and shell history would show it.  The HMAC is
# computed here (RFC 2104) with bash's builtins and `openssl dgst` reading
# only standard input.
set -eu
usage="usage: $0 SECRET_FILE [EVENT_FILE]   (SECRET_FILE - : the secret on standard input)"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "$usage" >&2; exit 2; fi
secret_file=$1
event_file=${2:-}
if [ "$secret_file" = - ]; then
    [ -n "$event_file" ] || {
        echo "$0: the secret is on standard input, so the event must be a file: $0 - EVENT_FILE" >&2
        exit 2; }
elif [ ! -f "$secret_file" ]; then
    # Not echoed: it may be a secret given the old way.
    echo "$0: the first argument is not a file: give the name of a file that holds the secret (one per line, as HrflowSecretFile), or - for standard input; a secret on the command line shows in ps and shell history" >&2
    exit 2
elif [ ! -r "$secret_file" ]; then
    echo "$0: cannot read $secret_file: permission denied" >&2
    exit 1
fi

# The first secret line, blanks around it dropped.
secret=""
while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    line=${line#"${line%%[! $'\t']*}"}
    line=${line%"${line##*[! $'\t']}"}
    [ -z "$line" ] || [ "${line:0:1}" = "#" ] && continue
    secret=$line
    break
done < "$([ "$secret_file" = - ] && echo /dev/stdin || echo "$secret_file")"
[ -n "$secret" ] || { echo "$0: no secret in $secret_file" >&2; exit 1; }

if [ -n "$event_file" ]; then json=$(cat -- "$event_file"); else json=$(cat); fi

hex() { od -An -v -tx1 | tr -d ' \n'; }
# printf's format for the bytes of a hex string.
unhex() { local h=$1 i out=""; for ((i = 0; i < ${#h}; i += 2)); do out+="\\x${h:i:2}"; done; printf '%s' "$out"; }
key=$(printf '%s' "$secret" | hex)
[ ${#key} -le 128 ] || key=$(printf '%s' "$secret" | openssl dgst -sha256 -binary | hex)
ipad="" opad=""
for ((i = 0; i < 64; i++)); do
    b=0
    [ $((i * 2)) -ge ${#key} ] || b=$((16#${key:i*2:2}))
    ipad+=$(printf '\\x%02x' $((b ^ 0x36)))
    opad+=$(printf '\\x%02x' $((b ^ 0x5c)))
done
inner=$({ printf '%b' "$ipad"; printf '%s' "$json"; } | openssl dgst -sha256 -binary | hex)
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
sig=$({ printf '%b' "$opad"; printf '%b' "$(unhex "$inner")"; } | openssl dgst -sha256 -binary | b64url)
printf '%s.%s\n' "$sig" "$(printf '%s' "$json" | b64url)"
