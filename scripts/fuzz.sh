#!/bin/bash
# Fuzzes the request parsers with libFuzzer under ASan and UBSan.
#   scripts/fuzz.sh [SECONDS]       (default 60)
# Builds build/fuzz/fuzz_receive from the core's sources and runs it on the
# seed corpus in tests/fuzz/corpus; a crash leaves its input in build/fuzz/.
set -eu -o pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
seconds=${1:-60}
out="$top/build/fuzz"
mkdir -p "$out/corpus"
cflags="-Wall -Werror -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
# shellcheck disable=SC2046
clang $cflags -Imod_hrflow $(apr-1-config --includes --cppflags) \
    $(pkg-config --cflags json-c openssl) \
    tests/fuzz/fuzz_receive.c \
    $(for f in codec config env event form json log receive route sha256 \
        verify; do echo mod_hrflow/hf_$f.c; done) \
    $(apr-1-config --link-ld) $(pkg-config --libs json-c libcrypto) \
    -o "$out/fuzz_receive"
cd "$out"
ASAN_OPTIONS=detect_leaks=1 ./fuzz_receive -max_total_time="$seconds" \
    -max_len=4096 -print_final_stats=1 corpus "$top/tests/fuzz/corpus" \
    2>&1 | tail -n 12
