/*
 * hf_codec.c - strict base64 (both alphabets) and hex.
 *
 * HrFlow's SDKs send standard or URL-safe base64, padded or not, so one
 * decoder accepts all four, but never a mix of alphabets, stray characters,
 * or bits left over in the last character.
 */
#include "hrflow.h"

/* The value of a base64 character: 0-63, -1 for a character of neither
 * alphabet, -2 for one of the other alphabet than before. */
static int b64_value(unsigned char c, int *alphabet)
{
    int which = 0;
    int v;

    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') { v = 62; which = 1; }
    else if (c == '/') { v = 63; which = 1; }
    else if (c == '-') { v = 62; which = 2; }
    else if (c == '_') { v = 63; which = 2; }
    else return -1;
    if (which) {
        if (*alphabet && *alphabet != which)
            return -2;
        *alphabet = which;
    }
    return v;
}

const char *hf_codec_base64_decode(apr_pool_t *p, const char *src,
                                   apr_size_t len, unsigned char **out,
                                   apr_size_t *outlen)
{
    apr_size_t pad = 0, i, n = 0;
    unsigned long acc = 0;
    int bits = 0, alphabet = 0;
    unsigned char *dst;

    while (pad < 2 && len > 0 && src[len - 1] == '=') {
        len--;
        pad++;
    }
    if (pad && (len + pad) % 4 != 0)
        return "padding where the length does not need it";
    if (len % 4 == 1)
        return "a length no base64 text has";
    dst = apr_palloc(p, len * 3 / 4 + 1);
    for (i = 0; i < len; i++) {
        int v = b64_value((unsigned char)src[i], &alphabet);
        if (v < 0)
            return v == -2 ? "both alphabets mixed" : "a character that is "
                                                      "not base64";
        acc = (acc << 6) | (unsigned long)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[n++] = (unsigned char)(acc >> bits);
            acc &= (1UL << bits) - 1;
        }
    }
    if (acc != 0)          /* non-canonical: bits past the last byte */
        return "bits set past the last byte";
    dst[n] = '\0';
    *out = dst;
    *outlen = n;
    return NULL;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

const char *hf_codec_hex_decode(apr_pool_t *p, const char *src, apr_size_t len,
                                unsigned char **out, apr_size_t *outlen)
{
    apr_size_t i;
    unsigned char *dst;

    if (len % 2)
        return "an odd number of hex digits";
    dst = apr_palloc(p, len / 2 + 1);
    for (i = 0; i < len; i += 2) {
        int hi = hex_value((unsigned char)src[i]);
        int lo = hex_value((unsigned char)src[i + 1]);
        if (hi < 0 || lo < 0)
            return "a character that is not a hex digit";
        dst[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    dst[len / 2] = '\0';
    *out = dst;
    *outlen = len / 2;
    return NULL;
}

void hf_codec_hex_encode(const unsigned char *src, apr_size_t len, char *dst)
{
    static const char digits[] = "0123456789abcdef";
    apr_size_t i;

    for (i = 0; i < len; i++) {
        dst[2 * i] = digits[src[i] >> 4];
        dst[2 * i + 1] = digits[src[i] & 15];
    }
    dst[2 * len] = '\0';
}

char *hf_codec_base64url_encode(apr_pool_t *p, const unsigned char *src,
                                apr_size_t len)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *dst = apr_palloc(p, (len + 2) / 3 * 4 + 1), *o = dst;
    unsigned long acc = 0;
    int bits = 0;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        acc = (acc << 8) | src[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *o++ = digits[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        *o++ = digits[(acc << (6 - bits)) & 63];
    *o = '\0';
    return dst;
}
