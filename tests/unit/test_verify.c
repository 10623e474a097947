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
        hf_hmac_sha256(secret, payload, strlen(payload), mac);
    else
        hf_hmac_sha256(secret, event, strlen(event), mac);
    hf_hex_encode(mac, 32, digest);
    return apr_pstrcat(pool, hex ? b64(digest, 64, url, pad) : b64(mac, 32, url, pad),
                       ".", payload, NULL);
}

START_TEST(every_variant_matches)
{
    hf_signature_t sig;

    hf_signature_check(pool, signed_value("s3cret", _i), "", 0,
                       secrets("s3cret", NULL), &sig);
    ck_assert_msg(sig.matched, "variant %d", _i);
    ck_assert_uint_eq(sig.payload_len, strlen(event));
    ck_assert_int_eq(memcmp(sig.payload, event, sig.payload_len), 0);
}
END_TEST

START_TEST(every_variant_refuses_wrong_secret)
{
    hf_signature_t sig;

    hf_signature_check(pool, signed_value("other", _i), "", 0,
                       secrets("s3cret", NULL), &sig);
    ck_assert_msg(!sig.matched, "variant %d", _i);
}
END_TEST

START_TEST(rotation_accepts_either_secret)
{
    hf_signature_t sig;

    hf_signature_check(pool, signed_value("new", 0), "", 0,
                       secrets("old", "new"), &sig);
    ck_assert(sig.matched);
    hf_signature_check(pool, signed_value("old", 5), "", 0,
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
    hf_signature_check(pool, v, "", 0, secrets("k", NULL), &sig);
    ck_assert(!sig.matched);
}
END_TEST

START_TEST(body_signature_forms)
{
    const char *body = "{\"type\":\"job.storing.update\"}";
    unsigned char mac[32];
    char hex[65];
    hf_signature_t sig;

    hf_hmac_sha256("k", body, strlen(body), mac);
    hf_hex_encode(mac, 32, hex);
    hf_signature_check(pool, hex, body, strlen(body), secrets("k", NULL), &sig);
    ck_assert(sig.matched);
    ck_assert_ptr_null(sig.payload);
    hf_signature_check(pool, apr_pstrcat(pool, "sha256=", hex, NULL), body,
                       strlen(body), secrets("k", NULL), &sig);
    ck_assert(sig.matched);
    hf_signature_check(pool, b64(mac, 32, 0, 1), body, strlen(body),
                       secrets("k", NULL), &sig);
    ck_assert(sig.matched);
    hf_signature_check(pool, hex, body, strlen(body) - 1, secrets("k", NULL),
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
        hf_signature_check(pool, values[i], "", 0, secrets("k", NULL), &sig);
        ck_assert_msg(!sig.matched, "%s", values[i]);
    }
    hf_signature_check(pool, "abc", "", 0, NULL, &sig);
    ck_assert(!sig.matched);
}
END_TEST

START_TEST(undecodable_payload_flagged)
{
    unsigned char mac[32];
    hf_signature_t sig;
    const char *payload = "not*base64";

    hf_hmac_sha256("k", payload, strlen(payload), mac);
    hf_signature_check(pool, apr_pstrcat(pool, b64(mac, 32, 0, 1), ".",
                                         payload, NULL),
                       "", 0, secrets("k", NULL), &sig);
    ck_assert(sig.matched);
    ck_assert(sig.payload_bad);
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
    return s;
}

UNIT_MAIN(verify_suite)
