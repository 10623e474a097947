/* test_json.c - only RFC 8259 JSON is JSON: the scanner, the parse behind
 * it, batch spans, nesting limits and the flattening walk. */
#include "unit.h"

typedef struct {
    const char *text;
    apr_size_t len;     /* 0: strlen(text) */
} sample_t;

#define S(x) {x, sizeof(x) - 1}

/* Each is refused by the scanner, by the parse, and as a body. */
static const sample_t bad[] = {
    S(""), S("  "), S("{"), S("]"), S("[1,]"), S("{\"a\":1,}"), S("[,1]"),
    S("{'a':1}"), S("[{'}':1}]"), S("{\"a\":'b'}"),
    S("NaN"), S("[NaN]"), S("Infinity"), S("-Infinity"), S("{\"a\":Infinity}"),
    S("\"a\x01" "b\""), S("\"a\tb\""), S("\"a\nb\""), S("\"\x1f\""),
    S("/* c */{}"), S("{}// c"), S("{} # c"), S("[1 /* c */]"),
    S("01"), S("-01"), S("00"), S("1."), S(".5"), S("-"), S("1e"), S("1e+"),
    S("+1"), S("0x10"), S("1.5.5"), S("--1"), S("[01]"),
    S("\"\\x\""), S("\"\\u12\""), S("\"\\uZZZZ\""), S("\"\\'\""),
    S("\"\\ud800\""), S("\"\\udc00\""), S("\"\\ud800\\u0041\""),
    S("\"\\ud800x\""),
    S("\"\xff\""), S("\"\xc0\xaf\""), S("\"\xed\xa0\x80\""),
    S("\"\xf4\x90\x80\x80\""), S("\"\xe2\x82\""), S("\"\x80\""),
    S("TRUE"), S("nul"), S("truex"), S("[1 2]"), S("{\"a\" 1}"),
    S("{\"a\":1 \"b\":2}"), S("{1:2}"), S("{\"a\"}"), S("\"abc"),
    S("{} {}"), S("{}x"), S("\v{}"), S("\f{}"), S("{}\0"), S("\0"),
    S("[\"a\0b\"]"), S("\xef\xbb\xbf{}"),
    /* json-c would clamp these; the variables would differ from stdin */
    S("123456789012345678901234567890"), S("18446744073709551616"),
    S("-9223372036854775809"), S("{\"b\":123456789012345678901234567890}"),
    /* json-c cuts a name at \u0000 */
    S("{\"a\\u0000\":1}"), S("{\"type\":1,\"type\\u0000\":2}"),
};

/* Each is JSON, and json-c takes what the scanner takes. */
static const sample_t good[] = {
    S("{}"), S("[]"), S("0"), S("-0"), S("-0.0e+5"), S("1E-2"), S("true"),
    S("[null]"), S("\"\""), S(" \t\n\r[ 1 , {\"a\" : [ ] } ] \n"),
    S("\"\\u00e9\\ud83d\\ude00\""), S("\"\xc3\xa9\xf0\x9f\x98\x80\""),
    S("\"\\/\\b\\f\\n\\r\\t\\\\\\\"\""), S("\"\\u0000\""),
    S("18446744073709551615"), S("-9223372036854775808"), S("1e400"),
    S("-1e-400"), S("123456789012345678901234567890.0"),
    S("[\"]\\\"[\",{\"}\":\"{\"}]"), S("\"\x7f\""),
};

START_TEST(rejects_what_rfc_8259_does_not_allow)
{
    const sample_t *s = &bad[_i];
    const char *err;
    apr_array_header_t *evs;

    ck_assert_msg(hf_json_check(s->text, s->len, HF_JSON_MAX_DEPTH, 0) != NULL,
                  "scanner took sample %d", _i);
    ck_assert_msg(hf_json_parse(pool, s->text, s->len, &err) == NULL,
                  "parse took sample %d", _i);
    ck_assert_msg(hf_events_from_json(pool, s->text, s->len, 100, &evs, &err)
                      == HF_E_MALFORMED,
                  "body sample %d", _i);
}
END_TEST

START_TEST(accepts_rfc_8259_and_json_c_agrees)
{
    const sample_t *s = &good[_i];
    const char *err = NULL;

    ck_assert_msg(hf_json_check(s->text, s->len, HF_JSON_MAX_DEPTH, 0) == NULL,
                  "scanner refused sample %d", _i);
    ck_assert_msg(hf_json_parse(pool, s->text, s->len, &err) != NULL,
                  "json-c refused sample %d: %s", _i, err);
}
END_TEST

START_TEST(raw_bytes_only_when_asked)
{
    ck_assert_ptr_nonnull(hf_json_check("\"\xff\"", 3, 4, 0));
    ck_assert_ptr_null(hf_json_check("\"\xff\"", 3, 4, HF_JSON_RAW_BYTES));
    /* Control characters stay out either way. */
    ck_assert_ptr_nonnull(hf_json_check("\"\x01\"", 3, 4, HF_JSON_RAW_BYTES));
}
END_TEST

/* The two bodies of the report: one looped for ever, one ran a handler on
 * a fragment of itself. */
START_TEST(single_quoted_keys_are_400_not_a_loop)
{
    static const char *bodies[] = {
        "[{'}':1}]",
        "[{'\"':1,\"m\":\"}]\",\"type\":\"profile.parsing.success\"}]"};
    apr_array_header_t *evs, *starts, *lens;
    const char *err;
    int i;

    for (i = 0; i < 2; i++) {
        starts = apr_array_make(pool, 1, sizeof(apr_size_t));
        lens = apr_array_make(pool, 1, sizeof(apr_size_t));
        ck_assert_ptr_nonnull(hf_json_array_spans(bodies[i],
                                                  strlen(bodies[i]), starts,
                                                  lens));
        ck_assert_int_eq(hf_events_from_json(pool, bodies[i],
                                             strlen(bodies[i]), 100, &evs,
                                             &err), HF_E_MALFORMED);
        ck_assert_str_eq(err, "invalid_json");
        ck_assert_int_eq(evs->nelts, 0);
    }
}
END_TEST

START_TEST(spans_are_the_elements_as_written)
{
    const char *t = " [ {\"a\":\"]\\\",[\"} ,\n[1,[2]] ,\"x\",-1.5e3,{} ]\n";
    static const char *want[] = {"{\"a\":\"]\\\",[\"}", "[1,[2]]", "\"x\"",
                                 "-1.5e3", "{}"};
    apr_array_header_t *starts = apr_array_make(pool, 1, sizeof(apr_size_t));
    apr_array_header_t *lens = apr_array_make(pool, 1, sizeof(apr_size_t));
    int i;

    ck_assert_ptr_null(hf_json_array_spans(t, strlen(t), starts, lens));
    ck_assert_int_eq(starts->nelts, 5);
    for (i = 0; i < 5; i++)
        ck_assert_str_eq(apr_pstrmemdup(pool,
                                        t + APR_ARRAY_IDX(starts, i,
                                                          apr_size_t),
                                        APR_ARRAY_IDX(lens, i, apr_size_t)),
                         want[i]);
    /* Not an array, or not JSON: no spans. */
    ck_assert_str_eq(hf_json_array_spans("{}", 2, starts, lens),
                     "not an array");
    ck_assert_ptr_nonnull(hf_json_array_spans("[1,]", 4, starts, lens));
}
END_TEST

/* depth nested arrays around 0: "[[[0]]]" is 3 levels. */
static char *nested(int depth, apr_size_t *len)
{
    char *t = apr_palloc(pool, (apr_size_t)depth * 2 + 2);
    int i;

    for (i = 0; i < depth; i++) {
        t[i] = '[';
        t[depth + 1 + i] = ']';
    }
    t[depth] = '0';
    t[2 * depth + 1] = '\0';
    *len = 2 * (apr_size_t)depth + 1;
    return t;
}

START_TEST(depth_is_exactly_the_limit)
{
    apr_size_t len;
    const char *err = NULL;
    char *t = nested(HF_JSON_MAX_DEPTH, &len);

    ck_assert_ptr_null(hf_json_check(t, len, HF_JSON_MAX_DEPTH, 0));
    ck_assert_msg(hf_json_parse(pool, t, len, &err) != NULL, "%s", err);
    t = nested(HF_JSON_MAX_DEPTH + 1, &len);
    ck_assert_str_eq(hf_json_check(t, len, HF_JSON_MAX_DEPTH, 0),
                     "nested too deeply");
    ck_assert_ptr_null(hf_json_parse(pool, t, len, &err));
    /* The envelope of a spool file holds one level more. */
    ck_assert_ptr_nonnull(hf_json_parse_ex(pool, t, len, HF_ENVELOPE_DEPTH, 0,
                                           &err));
    /* Far deeper than any limit: refused, without recursion. */
    t = nested(1000000, &len);
    ck_assert_ptr_nonnull(hf_json_check(t, len, HF_JSON_DEPTH_LIMIT, 0));
    ck_assert_ptr_nonnull(hf_json_check(t, len, HF_JSON_DEPTH_LIMIT + 1, 0));
}
END_TEST

START_TEST(nul_in_a_string_is_no_c_string)
{
    const char *t = "{\"type\":\"a.b.c\\u0000x\",\"k\":\"v\\u0000\"}";
    const char *err;
    hf_json_t *j = hf_json_parse(pool, t, strlen(t), &err);
    apr_array_header_t *evs;

    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_null(hf_json_get_string(j, "type"));
    ck_assert_ptr_null(hf_json_as_string(hf_json_get(j, "k")));
    ck_assert_int_eq(hf_events_from_json(pool, t, strlen(t), 100, &evs, &err),
                     HF_E_MALFORMED);
    ck_assert_str_eq(err, "invalid_type");
}
END_TEST

typedef struct {
    int calls;
    int stop_after;
    apr_size_t longest;
} leaf_count_t;

static int count_leaf(void *ctx, const char *path, apr_size_t plen,
                      const char *value, apr_size_t vlen)
{
    leaf_count_t *c = ctx;

    (void)value;
    (void)vlen;
    ck_assert_uint_eq(strlen(path), plen);
    if (plen > c->longest)
        c->longest = plen;
    return ++c->calls >= c->stop_after;
}

START_TEST(walk_stops_when_asked_and_counts_the_rest)
{
    apr_array_header_t *parts = apr_array_make(pool, 1000, sizeof(char *));
    const char *text, *err;
    hf_json_t *j;
    leaf_count_t c = {0, 10, 0};
    int i;

    APR_ARRAY_PUSH(parts, const char *) = "{\"a\":[";
    for (i = 0; i < 1000; i++)
        APR_ARRAY_PUSH(parts, const char *) = i ? ",[0,true]" : "[0,true]";
    APR_ARRAY_PUSH(parts, const char *) = "],\"b\":{\"c\":null}}";
    text = apr_array_pstrcat(pool, parts, 0);
    j = hf_json_parse(pool, text, strlen(text), &err);
    ck_assert_ptr_nonnull(j);
    ck_assert_uint_eq(hf_json_flatten(pool, j, "P", 64, count_leaf, &c), 1991);
    ck_assert_int_eq(c.calls, 10);
    /* A path longer than max_path is not passed: "P_b_c" is 5 bytes. */
    c.calls = 0;
    c.stop_after = 1 << 30;
    c.longest = 0;
    ck_assert_uint_eq(hf_json_flatten(pool, j, "P", 4, count_leaf, &c), 2001);
    ck_assert_int_eq(c.calls, 0);
    ck_assert_uint_eq(hf_json_flatten(pool, j, "P", 5, count_leaf, &c), 2000);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_uint_eq(c.longest, 5);
}
END_TEST

static void count_every_leaf(void *ctx, const char *path, const char *value,
                             apr_size_t vlen)
{
    (void)path;
    ck_assert_uint_eq(strlen(value), vlen);
    ++*(int *)ctx;
}

START_TEST(walk_passes_every_leaf)
{
    const char *t = "{\"a\":[1,2.50,true,null,\"s\"],\"b\":{\"c\":{}}}";
    const char *err;
    hf_json_t *j = hf_json_parse(pool, t, strlen(t), &err);
    int n = 0;

    hf_json_walk(pool, j, "HRFLOW", count_every_leaf, &n);
    ck_assert_int_eq(n, 5);
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc = unit_case(s, "json");

    tcase_add_loop_test(tc, rejects_what_rfc_8259_does_not_allow, 0,
                        (int)(sizeof bad / sizeof *bad));
    tcase_add_loop_test(tc, accepts_rfc_8259_and_json_c_agrees, 0,
                        (int)(sizeof good / sizeof *good));
    tcase_add_test(tc, raw_bytes_only_when_asked);
    tcase_add_test(tc, single_quoted_keys_are_400_not_a_loop);
    tcase_add_test(tc, spans_are_the_elements_as_written);
    tcase_add_test(tc, depth_is_exactly_the_limit);
    tcase_add_test(tc, nul_in_a_string_is_no_c_string);
    tcase_add_test(tc, walk_stops_when_asked_and_counts_the_rest);
    tcase_add_test(tc, walk_passes_every_leaf);
    return s;
}

UNIT_MAIN(json_suite)
