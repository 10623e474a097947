#!/bin/bash
# Prints an HTTP-HRFLOW-SIGNATURE value for the event JSON on standard input,
# in the form HrFlow sends: base64url(HMAC-SHA256(secret, json)).base64url(json)
#   scripts/sign.sh SECRET < event.json
#   curl -H "HTTP-HRFLOW-SIGNATURE: $(scripts/sign.sh "$S" < ev.json)" -X POST URL
set -eu
[ $# -eq 1 ] || { echo "usage: $0 SECRET < event.json" >&2; exit 2; }
json=$(cat)
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
sig=$(printf '%s' "$json" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
printf '%s.%s\n' "$sig" "$(printf '%s' "$json" | b64url)"
