/* test_codec.c - base64 in both alphabets, hex. */
#include "unit.h"

static const char *b64(const char *in, apr_size_t *n)
{
    unsigned char *out;

    if (hf_codec_base64_decode(pool, in, strlen(in), &out, n))
        return NULL;
    return (const char *)out;
}

START_TEST(base64_standard_and_url_alphabets)
{
    apr_size_t n;

    ck_assert_str_eq(b64("aGVsbG8/Pz4+", &n), "hello?" "?>>");
    ck_assert_str_eq(b64("aGVsbG8_Pz4-", &n), "hello?" "?>>");
    ck_assert_uint_eq(n, 9);
}
END_TEST

START_TEST(base64_padding_optional)
{
    apr_size_t n;

    ck_assert_str_eq(b64("aGk=", &n), "hi");
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(b64("aGk", &n), "hi");
    ck_assert_str_eq(b64("aA==", &n), "h");
    ck_assert_str_eq(b64("aA", &n), "h");
    ck_assert_str_eq(b64("", &n), "");
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(base64_rejects_bad_input)
{
    apr_size_t n;

    ck_assert_ptr_null(b64("aGk*", &n));        /* bad character */
    ck_assert_ptr_null(b64("a+b_", &n));        /* mixed alphabets */
    ck_assert_ptr_null(b64("a", &n));           /* impossible length */
    ck_assert_ptr_null(b64("aGk==", &n));       /* wrong padding */
    ck_assert_ptr_null(b64("aB==", &n));        /* bits past the end */
    ck_assert_ptr_null(b64("aG k", &n));        /* space */
}
END_TEST

START_TEST(hex_both_ways)
{
    unsigned char *out;
    apr_size_t n;
    char back[9];

    ck_assert_ptr_null(hf_codec_hex_decode(pool, "00fFa0", 6, &out, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(out[1], 0xff);
    hf_codec_hex_encode(out, n, back);
    ck_assert_str_eq(back, "00ffa0");
    ck_assert_str_eq(hf_codec_hex_decode(pool, "abc", 3, &out, &n),
                     "an odd number of hex digits");
    ck_assert_str_eq(hf_codec_hex_decode(pool, "zz", 2, &out, &n),
                     "a character that is not a hex digit");
}
END_TEST

START_TEST(base64url_encode_round_trips)
{
    /* RFC 4648 test vectors, in the URL-safe alphabet without padding. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba",
                                        "foobar", "\xfb\xff"};
    static const char *const coded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg",
                                        "Zm9vYmE", "Zm9vYmFy", "-_8"};
    unsigned char *back;
    apr_size_t i, n;

    for (i = 0; i < sizeof plain / sizeof *plain; i++) {
        const char *enc = hf_codec_base64url_encode(
            pool, (const unsigned char *)plain[i], strlen(plain[i]));
        ck_assert_str_eq(enc, coded[i]);
        ck_assert_ptr_null(
            hf_codec_base64_decode(pool, enc, strlen(enc), &back, &n));
        ck_assert_uint_eq(n, strlen(plain[i]));
        ck_assert_int_eq(memcmp(back, plain[i], n), 0);
    }
}
END_TEST

/* Failures say what is wrong, as every hf_* function that can fail does. */
START_TEST(base64_failures_say_why)
{
    unsigned char *out;
    apr_size_t n;

    ck_assert_str_eq(hf_codec_base64_decode(pool, "ab+_", 4, &out, &n),
                     "both alphabets mixed");
    ck_assert_str_eq(hf_codec_base64_decode(pool, "ab!c", 4, &out, &n),
                     "a character that is not base64");
    ck_assert_str_eq(hf_codec_base64_decode(pool, "abcde", 5, &out, &n),
                     "a length no base64 text has");
    ck_assert_str_eq(hf_codec_base64_decode(pool, "abc==", 5, &out, &n),
                     "padding where the length does not need it");
    ck_assert_str_eq(hf_codec_base64_decode(pool, "YR", 2, &out, &n),
                     "bits set past the last byte");
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = unit_case(s, "codec");

    tcase_add_test(tc, base64_standard_and_url_alphabets);
    tcase_add_test(tc, base64_padding_optional);
    tcase_add_test(tc, base64_rejects_bad_input);
    tcase_add_test(tc, hex_both_ways);
    tcase_add_test(tc, base64url_encode_round_trips);
    tcase_add_test(tc, base64_failures_say_why);
    return s;
}

UNIT_MAIN(codec_suite)
