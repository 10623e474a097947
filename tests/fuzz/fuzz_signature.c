/*
 * fuzz_signature.c - libFuzzer target for signature header values
 * (SPEC section 2): hf_verify_signature and the base64 and hex decoders.
 *
 * Byte 0, bit 0 clear: the rest is a header value up to the first '\n', then
 * the body, checked as received.  Bit 0 set: the rest is a payload that this
 * target signs with the real secret in the variant that bits 1-5 pick; the
 * check must accept it, and refuse it under another secret or with one byte
 * of the signature changed.
 */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "hrflow.h"
#include "fuzz.h"

#define SECRET "fuzz-secret"

static apr_array_header_t *secrets, *others;

static void setup(void)
{
    apr_pool_t *p = fuzz_pool();

    secrets = apr_array_make(p, 2, sizeof(const char *));
    APR_ARRAY_PUSH(secrets, const char *) = "rotated-secret";
    APR_ARRAY_PUSH(secrets, const char *) = SECRET;
    others = apr_array_make(p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(others, const char *) = "another-secret";
}

/* URL-safe unpadded base64 into the alphabet and padding asked for. */
static char *base64(apr_pool_t *p, const void *data, apr_size_t len,
                    int standard, int padded)
{
    char *s = hf_codec_base64url_encode(p, data, len), *c;

    for (c = s; standard && *c; c++)
        *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
    while (padded && strlen(s) % 4)
        s = apr_pstrcat(p, s, "=", NULL);
    return s;
}

/* The signature of data in the variant of bits 1-3 of v. */
static char *sign(apr_pool_t *p, const void *data, apr_size_t len, int v)
{
    unsigned char mac[32];
    char hex[65];

    hf_sha256_hmac(SECRET, data, len, mac);
    if (!(v & 8))
        return base64(p, mac, sizeof mac, v & 2, v & 4);
    hf_codec_hex_encode(mac, sizeof mac, hex);
    return base64(p, hex, 64, v & 2, v & 4);
}

static void check_signed(apr_pool_t *p, int v, const char *payload,
                         apr_size_t len)
{
    hf_signature_t sig;
    char *value, *enc;
    unsigned char mac[32];
    char hex[65];

    if (v & 32) {
        /* No dot: the body's HMAC, as hex, sha256=hex, or base64. */
        hf_sha256_hmac(SECRET, payload, len, mac);
        hf_codec_hex_encode(mac, sizeof mac, hex);
        value = v & 2 ? apr_pstrcat(p, "sha256=", hex, NULL)
                : v & 4 ? base64(p, mac, sizeof mac, v & 8, v & 16)
                        : apr_pstrdup(p, hex);
    } else {
        enc = base64(p, payload, len, v & 2, v & 4);
        value = apr_pstrcat(p,
                            v & 16 ? sign(p, enc, strlen(enc), v)
                                   : sign(p, payload, len, v),
                            ".", enc, NULL);
    }
    hf_verify_signature(p, value, payload, len, secrets, &sig);
    FUZZ_CHECK(sig.matched);
    if (!(v & 32))
        FUZZ_CHECK(sig.payload && sig.payload_len == len
                   && (!len || memcmp(sig.payload, payload, len) == 0));
    hf_verify_signature(p, value, payload, len, others, &sig);
    FUZZ_CHECK(!sig.matched);
    /* One character of the signature changed: never accepted. */
    value[v & 32 && v & 2 ? 7 : 0] ^= 1;
    hf_verify_signature(p, value, payload, len, secrets, &sig);
    FUZZ_CHECK(!sig.matched);
}

/* Hex that decodes is the lower-case encoding of what it decodes to. */
static void check_hex(apr_pool_t *p, const char *s)
{
    unsigned char *bytes;
    apr_size_t n, i;
    char *again;

    if (hf_codec_hex_decode(p, s, strlen(s), &bytes, &n))
        return;
    FUZZ_CHECK(n * 2 == strlen(s));
    again = apr_palloc(p, 2 * n + 1);
    hf_codec_hex_encode(bytes, n, again);
    for (i = 0; i < 2 * n; i++)
        FUZZ_CHECK(again[i] == apr_tolower(s[i]));
}

static void check_received(apr_pool_t *p, const char *rest, apr_size_t len)
{
    const char *nl = memchr(rest, '\n', len);
    const char *value = nl ? apr_pstrmemdup(p, rest, (apr_size_t)(nl - rest))
                           : rest;
    const char *body = nl ? nl + 1 : "";
    apr_size_t body_len = nl ? len - (apr_size_t)(nl + 1 - rest) : 0;
    hf_signature_t sig;
    unsigned char *bytes;
    apr_size_t n;

    hf_verify_signature(p, value, body, body_len, secrets, &sig);
    FUZZ_CHECK(!(sig.payload && sig.payload_bad));
    FUZZ_CHECK(!sig.payload || strchr(value, '.'));
    if (!strchr(value, '.'))
        FUZZ_CHECK(!sig.payload && !sig.payload_bad);
    if (!hf_codec_base64_decode(p, value, strlen(value), &bytes, &n))
        FUZZ_CHECK(n <= strlen(value) * 3 / 4);
    check_hex(p, value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    const char *rest;

    if (!secrets)
        setup();
    if (size < 1)
        return 0;
    apr_pool_create(&p, fuzz_pool());
    rest = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    if (data[0] & 1)
        check_signed(p, data[0], rest, size - 1);
    else
        check_received(p, rest, size - 1);
    apr_pool_destroy(p);
    return 0;
}
