/* test_verify.c - every signature variant of SPEC section 2. */
#include <apr_encode.h>
#include "unit.h"

static const char *event = "{\"type\":\"profile.parsing.success\"}";

static apr_array_header_t *secrets(const char *a, const char *b)
{
    apr_array_header_t *s = apr_array_make(pool, 2, sizeof(const char *));

    APR_ARRAY_PUSH(s, const char *) = a;
    if (b)
        APR_ARRAY_PUSH(s, const char *) = b;
    return s;
}

static const char *b64(const void *data, apr_size_t len, int url, int pad)
{
    int flags = (url ? APR_ENCODE_URL : 0) | (pad ? 0 : APR_ENCODE_NOPADDING);

    return apr_pencode_base64_binary(pool, data, (apr_ssize_t)len, flags, NULL);
}

/* Builds SIG.PAYLOAD in one variant: bit 0 URL alphabet, bit 1 padded,
 * bit 2 hex digest, bit 3 HMAC over the encoded payload. */
static const char *signed_value(const char *secret, int variant)
{
    int url = variant & 1, pad = variant & 2, hex = variant & 4;
    const char *payload = b64(event, strlen(event), url, pad);
    unsigned char mac[32];
    char digest[65];

    if (variant & 8)
        hf_sha256_hmac(secret, payload, strlen(payload), mac);
    else
        hf_sha256_hmac(secret, event, strlen(event), mac);
    hf_codec_hex_encode(mac, 32, digest);
    return apr_pstrcat(pool, hex ? b64(digest, 64, url, pad) : b64(mac, 32, url, pad),
                       ".", payload, NULL);
}

START_TEST(every_variant_matches)
{
    hf_signature_t sig;

    hf_verify_signature(pool, signed_value("s3cret", _i), "", 0,
                        secrets("s3cret", NULL), &sig);
    ck_assert_msg(sig.matched, "variant %d", _i);
    ck_assert_uint_eq(sig.payload_len, strlen(event));
    ck_assert_int_eq(memcmp(sig.payload, event, sig.payload_len), 0);
}
END_TEST

START_TEST(every_variant_refuses_wrong_secret)
{
    hf_signature_t sig;

    hf_verify_signature(pool, signed_value("other", _i), "", 0,
                        secrets("s3cret", NULL), &sig);
    ck_assert_msg(!sig.matched, "variant %d", _i);
}
END_TEST

START_TEST(rotation_accepts_either_secret)
{
    hf_signature_t sig;

    hf_verify_signature(pool, signed_value("new", 0), "", 0,
                        secrets("old", "new"), &sig);
    ck_assert(sig.matched);
    hf_verify_signature(pool, signed_value("old", 5), "", 0,
                        secrets("old", "new"), &sig);
    ck_assert(sig.matched);
}
END_TEST

START_TEST(tampered_payload_refused)
{
    hf_signature_t sig;
    const char *v = signed_value("k", 0);
    const char *dot = strchr(v, '.');
    const char *other = b64("{\"type\":\"job.parsing.success\"}", 30, 0, 1);

    v = apr_pstrcat(pool, apr_pstrmemdup(pool, v, (apr_size_t)(dot - v + 1)),
                    other, NULL);
    hf_verify_signature(pool, v, "", 0, secrets("k", NULL), &sig);
    ck_assert(!sig.matched);
}
END_TEST

START_TEST(body_signature_forms)
{
    const char *body = "{\"type\":\"job.storing.update\"}";
    unsigned char mac[32];
    char hex[65];
    hf_signature_t sig;

    hf_sha256_hmac("k", body, strlen(body), mac);
    hf_codec_hex_encode(mac, 32, hex);
    hf_verify_signature(pool, hex, body, strlen(body), secrets("k", NULL),
                        &sig);
    ck_assert(sig.matched);
    ck_assert_ptr_null(sig.payload);
    hf_verify_signature(pool, apr_pstrcat(pool, "sha256=", hex, NULL), body,
                        strlen(body), secrets("k", NULL), &sig);
    ck_assert(sig.matched);
    hf_verify_signature(pool, b64(mac, 32, 0, 1), body, strlen(body),
                        secrets("k", NULL), &sig);
    ck_assert(sig.matched);
    hf_verify_signature(pool, hex, body, strlen(body) - 1, secrets("k", NULL),
                        &sig);
    ck_assert(!sig.matched);
}
END_TEST

START_TEST(garbage_never_matches)
{
    static const char *values[] = {".", "..", "abc", "a.b", "!!!.e30",
                                   "sha256=", "e30.", "e30=.e30"};
    hf_signature_t sig;
    apr_size_t i;

    for (i = 0; i < sizeof values / sizeof *values; i++) {
        hf_verify_signature(pool, values[i], "", 0, secrets("k", NULL), &sig);
        ck_assert_msg(!sig.matched, "%s", values[i]);
    }
    hf_verify_signature(pool, "abc", "", 0, NULL, &sig);
    ck_assert(!sig.matched);
}
END_TEST

START_TEST(undecodable_payload_flagged)
{
    unsigned char mac[32];
    hf_signature_t sig;
    const char *payload = "not*base64";

    hf_sha256_hmac("k", payload, strlen(payload), mac);
    hf_verify_signature(
        pool, apr_pstrcat(pool, b64(mac, 32, 0, 1), ".", payload, NULL), "", 0,
        secrets("k", NULL), &sig);
    ck_assert(sig.matched);
    ck_assert(sig.payload_bad);
}
END_TEST

static const char *hex_of(const unsigned char *b)
{
    char *hex = apr_palloc(pool, 65);

    hf_codec_hex_encode(b, 32, hex);
    return hex;
}

START_TEST(sha256_known_answers)
{
    /* FIPS 180-2 appendix B: one block, two blocks. */
    unsigned char d[32];

    hf_sha256("abc", 3, d);
    ck_assert_str_eq(hex_of(d), "ba7816bf8f01cfea414140de5dae2223"
                                "b00361a396177a9cb410ff61f20015ad");
    hf_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
              d);
    ck_assert_str_eq(hex_of(d), "248d6a61d20638b8e5c026930c3e6039"
                                "a33ce45964ff2167f6ecedd419db06c1");
    hf_sha256("", 0, d);
    ck_assert_str_eq(hex_of(d), "e3b0c44298fc1c149afbf4c8996fb924"
                                "27ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(hmac_rfc4231_vectors)
{
    /* RFC 4231 test cases 2 (short key) and 6 (key longer than a block). */
    unsigned char mac[32];
    char long_key[132];
    const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";

    hf_sha256_hmac("Jefe", "what do ya want for nothing?", 28, mac);
    ck_assert_str_eq(hex_of(mac), "5bdcc146bf60754e6a042426089575c7"
                                  "5a003f089d2739839dec58b964ec3843");
    memset(long_key, 0xaa, 131);
    long_key[131] = '\0';
    hf_sha256_hmac(long_key, data6, strlen(data6), mac);
    ck_assert_str_eq(hex_of(mac), "60e431591ee0b67f0d8a26aacbf5b77f"
                                  "8e0bc6213728c5140546040f0ee37f54");
}
END_TEST

static Suite *verify_suite(void)
{
    Suite *s = suite_create("verify");
    TCase *tc = unit_case(s, "verify");

    tcase_add_loop_test(tc, every_variant_matches, 0, 16);
    tcase_add_loop_test(tc, every_variant_refuses_wrong_secret, 0, 16);
    tcase_add_test(tc, rotation_accepts_either_secret);
    tcase_add_test(tc, tampered_payload_refused);
    tcase_add_test(tc, body_signature_forms);
    tcase_add_test(tc, garbage_never_matches);
    tcase_add_test(tc, undecodable_payload_flagged);
    tcase_add_test(tc, sha256_known_answers);
    tcase_add_test(tc, hmac_rfc4231_vectors);
    return s;
}

UNIT_MAIN(verify_suite)
