/*
 * hf_verify.c - HrFlow signatures (SPEC section 2).
 *
 * A header value SIG.PAYLOAD carries the event itself; HrFlow's SDKs differ
 * in the base64 alphabet, padding, whether SIG is the raw HMAC or its hex
 * digest, and whether the HMAC covers the decoded or the encoded payload.  A
 * value with no dot signs the raw body instead.  Every variant is tried under
 * every secret, each comparison in constant time, and the first match wins.
 */
#include <string.h>
#include <openssl/crypto.h>
#include "hrflow.h"

#define MAC_LEN 32

/* What a received signature can be compared with. */
typedef struct {
    const unsigned char *raw;   /* 32 raw bytes, or NULL */
    char hex[2 * MAC_LEN + 1];  /* lowercase hex digest, or "" */
} claimed_t;

/* Interprets decoded signature bytes as raw HMAC or its hex digest. */
static int claimed_from_bytes(const unsigned char *b, apr_size_t n,
                              claimed_t *c)
{
    apr_size_t i;

    c->raw = NULL;
    c->hex[0] = '\0';
    if (n == MAC_LEN) {
        c->raw = b;
        return 1;
    }
    if (n != 2 * MAC_LEN)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = b[i];
        if (ch >= 'A' && ch <= 'F')
            ch = (unsigned char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return 0;
        c->hex[i] = (char)ch;
    }
    c->hex[n] = '\0';
    return 1;
}

static int claimed_matches(const claimed_t *c, const unsigned char mac[MAC_LEN])
{
    char hex[2 * MAC_LEN + 1];

    if (c->raw)
        return CRYPTO_memcmp(c->raw, mac, MAC_LEN) == 0;
    hf_codec_hex_encode(mac, MAC_LEN, hex);
    return CRYPTO_memcmp(c->hex, hex, 2 * MAC_LEN) == 0;
}

/* Does any secret's HMAC over data match? Tries every secret, always. */
static int any_secret_matches(const claimed_t *c,
                              const apr_array_header_t *secrets,
                              const void *data, apr_size_t len)
{
    unsigned char mac[MAC_LEN];
    int i, matched = 0;

    for (i = 0; secrets && i < secrets->nelts; i++) {
        hf_sha256_hmac(APR_ARRAY_IDX(secrets, i, const char *), data, len, mac);
        matched |= claimed_matches(c, mac);
    }
    OPENSSL_cleanse(mac, sizeof mac);
    return matched;
}

/* A value with no dot: hex, sha256=hex, or base64 of the body's HMAC. */
static int body_signature_matches(apr_pool_t *p, const char *v,
                                  const char *body, apr_size_t body_len,
                                  const apr_array_header_t *secrets)
{
    unsigned char *bytes;
    apr_size_t n, len;
    claimed_t c;

    if (!strncasecmp(v, "sha256=", 7))
        v += 7;
    len = strlen(v);
    if (len == 2 * MAC_LEN && claimed_from_bytes((const unsigned char *)v,
                                                 len, &c))
        return any_secret_matches(&c, secrets, body, body_len);
    if (!hf_codec_base64_decode(p, v, len, &bytes, &n)
        && claimed_from_bytes(bytes, n, &c))
        return any_secret_matches(&c, secrets, body, body_len);
    return 0;
}

void hf_verify_signature(apr_pool_t *p, const char *value, const char *body,
                         apr_size_t body_len, const apr_array_header_t *secrets,
                         hf_signature_t *out)
{
    const char *dot = strchr(value, '.');
    const char *enc_payload;
    unsigned char *sig, *payload;
    apr_size_t sig_len, payload_len;
    claimed_t c;

    memset(out, 0, sizeof *out);
    while (*value == ' ')
        value++;
    if (!dot) {
        out->matched = body_signature_matches(p, value, body, body_len,
                                              secrets);
        return;
    }
    enc_payload = dot + 1;
    if (!hf_codec_base64_decode(p, enc_payload, strlen(enc_payload), &payload,
                                &payload_len)) {
        out->payload = payload;
        out->payload_len = payload_len;
    } else {
        out->payload_bad = 1;
    }
    if (hf_codec_base64_decode(p, value, (apr_size_t)(dot - value), &sig,
                               &sig_len)
        || !claimed_from_bytes(sig, sig_len, &c))
        return;
    out->matched = any_secret_matches(&c, secrets, enc_payload,
                                      strlen(enc_payload))
                   | (out->payload
                      && any_secret_matches(&c, secrets, payload,
                                            payload_len));
}
