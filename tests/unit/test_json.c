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

/* The last member of an object, found by the scan: never a name or a
 * nested member that only looks like it. */
START_TEST(last_member_is_the_top_objects)
{
    static const char *const texts[] = {
        " {\"a\":1, \"k\\\"\":{\"b\":[\"}\",{\"c\":2}]} }\n",
        "{\"x\":{\"event\":1},\"k\\\"\":3}",
        "{\"k\\\"\":\"\\\"event\\\":\"}",
        "{\"k\\\"\":{}}",
        NULL};
    static const char *const values[] = {
        "{\"b\":[\"}\",{\"c\":2}]}", "3", "\"\\\"event\\\":\"", "{}"};
    hf_json_span_t name, value;
    int i;

    for (i = 0; texts[i]; i++) {
        const char *t = texts[i];
        ck_assert_int_eq(hf_json_last_member(t, strlen(t), 8, 0, &name,
                                             &value), 0);
        ck_assert_str_eq(apr_pstrmemdup(pool, t + name.start, name.len),
                         "k\\\"");
        ck_assert_str_eq(apr_pstrmemdup(pool, t + value.start, value.len),
                         values[i]);
    }
    /* Not an object with a member, not JSON, or too deep: none. */
    ck_assert_int_eq(hf_json_last_member("{}", 2, 8, 0, &name, &value), -1);
    ck_assert_int_eq(hf_json_last_member("[1]", 3, 8, 0, &name, &value), -1);
    ck_assert_int_eq(hf_json_last_member("{\"a\":1,}", 8, 8, 0, &name,
                                         &value), -1);
    ck_assert_int_eq(hf_json_last_member("{\"a\":[[1]]}", 11, 2, 0, &name,
                                         &value), -1);
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

/* ---- the walk over the text against json-c's tree ----------------------- */

typedef struct {
    const char *text;
    apr_size_t max_path;   /* 0: HF_MAX_NAME_BYTES */
    int stop_after;        /* leaves taken before leaf() says stop; 0: all */
    int fallback;          /* the text walk must give up */
} flat_case_t;

static const flat_case_t flat_cases[] = {
    {"{}", 0, 0, 0},
    {" \n{ \"a\" : 1 }\t", 0, 0, 0},
    {"{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"u\":\"\\u00e9\\u20ac\\u0041\"}",
     0, 0, 0},
    {"{\"smile\":\"\\ud83d\\ude00\",\"raw\":\"\xf0\x9f\x98\x80\xc3\xa9\"}", 0,
     0, 0},
    {"{\"nul\":\"a\\u0000b\",\"end\":\"\\u0000\"}", 0, 0, 0},
    {"{\"z\":-0,\"f\":1.0,\"e\":1e2,\"E\":-1.5E-3,\"ze\":-0.0,\"x\":0}", 0, 0,
     0},
    {"{\"u\":18446744073709551615,\"i\":-9223372036854775808,"
     "\"m\":9223372036854775807,\"m1\":9223372036854775808,\"n\":-1}", 0, 0, 0},
    {"{\"o\":{},\"a\":[],\"aa\":[[],{},[{}],[[[]]]],\"t\":true,\"f\":false,"
     "\"n\":null}", 0, 0, 0},
    {"{\"a\":[1,[2,[3,{\"b\":[4]}]]],\"c\":{\"d\":{\"e\":\"f\"}}}", 0, 0, 0},
    {"{\"\\u0041b\":1,\"\\ud83d\\ude00\":{\"\\n\":2}}", 0, 0, 0},
    {"{\"abc\":{\"defg\":1,\"h\":2},\"ijklmnop\":[3,4],\"q\":5}", 10, 0, 0},
    {"{\"abc\":{\"defg\":1,\"h\":2},\"ijklmnop\":[3,4],\"q\":5}", 3, 0, 0},
    {"{\"abc\":{\"defg\":1,\"h\":2},\"ijklmnop\":[3,4],\"q\":5}", 8, 0, 0},
    {"{\"a\":[1,2,3,{\"b\":[4,5]},6],\"c\":7,\"d\":{\"e\":8}}", 0, 1, 0},
    {"{\"a\":[1,2,3,{\"b\":[4,5]},6],\"c\":7,\"d\":{\"e\":8}}", 0, 4, 0},
    {"{\"a\":[1,2,3,{\"b\":[4,5]},6],\"c\":7,\"d\":{\"e\":8}}", 10, 5, 0},
    {"{\"a\":1,\"a\":2}", 0, 0, 1},
    {"{\"a\":1,\"b\":{\"c\":1,\"\\u0063\":2}}", 0, 0, 1},
    {"{\"a\":[{\"x\":1},{\"x\":1,\"y\":2,\"x\":3}]}", 0, 0, 1},
    /* the same name in different objects is no duplicate */
    {"{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}", 0, 0, 0},
    /* a duplicate where leaves are only counted changes the count */
    {"{\"longname\":{\"x\":[1,2],\"x\":3}}", 4, 0, 1},
    /* json-c 0.16 makes U+FFFD of U+1D800, U+1DC00, U+5D800 (not U+1D7FF) */
    {"{\"a\":\"\\ud836\\udc00\"}", 0, 0, 1},
    {"{\"a\":\"x\",\"b\":[\"\\ud837\\udc00\"]}", 0, 0, 1},
    {"{\"\\ud936\\udc00\":1}", 0, 0, 1},
    {"{\"a\":\"\\ud835\\udfff\\ud838\\udc00\"}", 0, 0, 0},
};

typedef struct {
    apr_array_header_t *leaves;  /* "path", "value" with NULs as \0, ... */
    int stop_after;
    int calls;
} rec_t;

static int rec_leaf(void *ctx, const char *path, apr_size_t plen,
                    const char *value, apr_size_t vlen)
{
    rec_t *r = ctx;
    apr_size_t i;
    char *v = apr_palloc(pool, 2 * vlen + 1), *o = v;

    ck_assert_uint_eq(strlen(path), plen);
    for (i = 0; i < vlen; i++) {
        if (value[i] == '\0') {
            *o++ = '\\';
            *o++ = '0';
        } else {
            *o++ = value[i];
        }
    }
    *o = '\0';
    APR_ARRAY_PUSH(r->leaves, const char *) = apr_pstrdup(pool, path);
    APR_ARRAY_PUSH(r->leaves, const char *) = v;
    return r->stop_after && ++r->calls >= r->stop_after;
}

/* The text walk's leaves and count, which must be the tree's. */
static void flatten_both(const char *text, apr_size_t max_path,
                         int stop_after, rec_t *tree, rec_t *flat,
                         apr_size_t *tree_skipped, apr_size_t *flat_skipped,
                         int *fallback)
{
    const char *err;
    hf_json_t *j = hf_json_parse(pool, text, strlen(text), &err);

    ck_assert_msg(j != NULL, "%s: %s", text, err);
    tree->leaves = apr_array_make(pool, 8, sizeof(const char *));
    flat->leaves = apr_array_make(pool, 8, sizeof(const char *));
    tree->stop_after = flat->stop_after = stop_after;
    tree->calls = flat->calls = 0;
    *tree_skipped = hf_json_flatten(pool, j, "HRFLOW", max_path, rec_leaf,
                                    tree);
    *flat_skipped = hf_json_flatten_text(pool, text, strlen(text), "HRFLOW",
                                         max_path, rec_leaf, flat, fallback);
}

static void assert_same_leaves(const char *text, const rec_t *tree,
                               const rec_t *flat)
{
    int i;

    ck_assert_msg(tree->leaves->nelts == flat->leaves->nelts,
                  "%s: %d leaves from the tree, %d from the text", text,
                  tree->leaves->nelts / 2, flat->leaves->nelts / 2);
    for (i = 0; i < tree->leaves->nelts; i++)
        ck_assert_msg(!strcmp(APR_ARRAY_IDX(tree->leaves, i, const char *),
                              APR_ARRAY_IDX(flat->leaves, i, const char *)),
                      "%s: leaf %d: tree [%s], text [%s]", text, i / 2,
                      APR_ARRAY_IDX(tree->leaves, i, const char *),
                      APR_ARRAY_IDX(flat->leaves, i, const char *));
}

START_TEST(text_walk_is_the_tree_walk)
{
    const flat_case_t *c = &flat_cases[_i];
    rec_t tree, flat;
    apr_size_t ts, fs;
    int dup = -1;

    flatten_both(c->text, c->max_path ? c->max_path : HF_MAX_NAME_BYTES,
                 c->stop_after, &tree, &flat, &ts, &fs, &dup);
    ck_assert_msg(dup == c->fallback, "%s: fallback %d", c->text, dup);
    if (dup) {
        ck_assert_uint_eq(fs, 0);
        return;
    }
    assert_same_leaves(c->text, &tree, &flat);
    ck_assert_msg(ts == fs, "%s: %zu left out from the tree, %zu from the text",
                  c->text, (size_t)ts, (size_t)fs);
}
END_TEST

/* What json-c gives, written out: the comparison is not with itself. */
START_TEST(text_walk_values_as_written)
{
    const char *t = "{\"z\":-0,\"d\":1.0,\"e\":1e2,\"u\":18446744073709551615,"
                    "\"s\":\"\\ud83d\\ude00\\u0000x\",\"n\":null,\"b\":[true]}";
    const char *want[] = {"HRFLOW_z", "0", "HRFLOW_d", "1.0", "HRFLOW_e",
                          "1e2", "HRFLOW_u", "18446744073709551615",
                          "HRFLOW_s", "\xf0\x9f\x98\x80\\0x", "HRFLOW_n", "",
                          "HRFLOW_b_0", "true"};
    rec_t tree, flat;
    apr_size_t ts, fs, i;
    int dup;

    flatten_both(t, HF_MAX_NAME_BYTES, 0, &tree, &flat, &ts, &fs, &dup);
    ck_assert_int_eq(dup, 0);
    ck_assert_int_eq(flat.leaves->nelts, (int)(sizeof want / sizeof *want));
    for (i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_str_eq(APR_ARRAY_IDX(flat.leaves, i, const char *), want[i]);
    assert_same_leaves(t, &tree, &flat);
}
END_TEST

/* Objects nested to the depth limit, and names longer than a variable's. */
START_TEST(text_walk_deep_and_long)
{
    apr_array_header_t *parts = apr_array_make(pool, 100, sizeof(char *));
    char *longname = apr_palloc(pool, HF_MAX_NAME_BYTES + 1);
    const char *t;
    rec_t tree, flat;
    apr_size_t ts, fs;
    int i, dup;

    /* objects and arrays in turn, and an object at the limit's level */
    for (i = 0; i < HF_JSON_MAX_DEPTH - 1; i++)
        APR_ARRAY_PUSH(parts, const char *) = i % 2 ? "[1," : "{\"k\":";
    APR_ARRAY_PUSH(parts, const char *) = "{\"leaf\":\"v\"}";
    for (i = HF_JSON_MAX_DEPTH - 2; i >= 0; i--)
        APR_ARRAY_PUSH(parts, const char *) = i % 2 ? ",2]" : "}";
    t = apr_array_pstrcat(pool, parts, 0);
    ck_assert_ptr_null(hf_json_check(t, strlen(t), HF_JSON_MAX_DEPTH, 0));
    ck_assert_ptr_nonnull(
        hf_json_check(t, strlen(t), HF_JSON_MAX_DEPTH - 1, 0));
    flatten_both(t, HF_MAX_NAME_BYTES, 0, &tree, &flat, &ts, &fs, &dup);
    ck_assert_int_eq(dup, 0);
    ck_assert_int_gt(tree.leaves->nelts, 2);
    assert_same_leaves(t, &tree, &flat);
    ck_assert_uint_eq(ts, fs);
    flatten_both(t, 40, 0, &tree, &flat, &ts, &fs, &dup);
    assert_same_leaves(t, &tree, &flat);
    ck_assert_uint_eq(ts, fs);
    ck_assert_uint_gt(ts, 0);

    memset(longname, 'n', HF_MAX_NAME_BYTES);
    longname[HF_MAX_NAME_BYTES - 7] = '\0';  /* "HRFLOW_" + it: the limit */
    t = apr_pstrcat(pool, "{\"", longname, "\":1,\"", longname,
                    "x\":[2,3],\"a\":{\"", longname, "\":4},\"b\":5}", NULL);
    flatten_both(t, HF_MAX_NAME_BYTES, 0, &tree, &flat, &ts, &fs, &dup);
    ck_assert_int_eq(dup, 0);
    assert_same_leaves(t, &tree, &flat);
    ck_assert_uint_eq(ts, 3);
    ck_assert_uint_eq(fs, 3);
    ck_assert_int_eq(flat.leaves->nelts, 4);
    /* a prefix already longer than max_path: every leaf counted */
    flatten_both(t, 5, 0, &tree, &flat, &ts, &fs, &dup);
    ck_assert_uint_eq(ts, 5);
    ck_assert_uint_eq(fs, 5);
    ck_assert_int_eq(flat.leaves->nelts, 0);
}
END_TEST

START_TEST(text_type_is_json_cs)
{
    static const struct {
        const char *text, *type;
    } c[] = {
        {"{\"type\":\"a.b.c\"}", "a.b.c"},
        {"{\"x\":{\"type\":\"n.e.st\"},\"type\":\"a.b.c\",\"y\":[\"type\"]}",
         "a.b.c"},
        {"{\"type\":\"a.b.c\",\"type\":\"d.e.f\"}", "d.e.f"},
        {"{\"type\":\"a.b.c\",\"type\":1}", NULL},
        {"{\"type\":1,\"\\u0074ype\":\"d.e\\u002ef\"}", "d.e.f"},
        {"{\"\\u0074\\u0079\\u0070\\u0065\":\"x\"}", "x"},
        {"{\"typ\":\"a.b.c\",\"types\":\"a.b.c\",\"Type\":\"a.b.c\"}", NULL},
        {"{\"type\":\"a.b.c\\u0000\"}", NULL},
        {"{\"type\":null}", NULL},
        {"{\"type\":{\"type\":\"a.b.c\"}}", NULL},
        {"{}", NULL},
        {"{\"type\":\"a\\ud836\\udc00\"}", NULL},
        {" {\"type\" : \"\\u00e9\\ud83d\\ude00\" } ",
         "\xc3\xa9\xf0\x9f\x98\x80"},
    };
    apr_size_t i;
    const char *err, *got, *tree;

    for (i = 0; i < sizeof c / sizeof *c; i++) {
        hf_json_t *j = hf_json_parse(pool, c[i].text, strlen(c[i].text), &err);
        ck_assert_ptr_nonnull(j);
        got = hf_json_text_type(pool, c[i].text, strlen(c[i].text));
        tree = hf_json_get_string(j, "type");
        ck_assert_msg(!got == !c[i].type && (!got || !strcmp(got, c[i].type)),
                      "%s: got %s", c[i].text, got ? got : "NULL");
        ck_assert_msg(got ? tree && !strcmp(got, tree)
                          : !tree || !hf_event_type_valid(tree),
                      "%s: json-c has %s", c[i].text, tree ? tree : "NULL");
    }
}
END_TEST

/* Both ways of making events: the same outcome, error and events. */
START_TEST(events_from_text_are_events_from_trees)
{
    static const char *const bodies[] = {
        "{\"type\":\"a.b.c\"}",
        " [ {\"type\":\"a.b.c\"} , {\"type\":\"d.e.f\"} ]\n",
        "[]", "null", "\"a.b.c\"", "1", "[null]", "[{\"type\":\"a.b.c\"},1]",
        "[{\"type\":\"a.b.c\"},{\"type\":\"A.b.c\"},2]", "{\"type\":\"a.b\"}",
        "{\"type\":\"a.b.c\",\"type\":\"x\"}", "{\"type\":\"a.b.c\\u0000\"}",
        "[1,2,3,4]", "{\"type\":\"a.b.c\"", "[[{\"type\":\"a.b.c\"}]]",
        "{\"type\":[\"a.b.c\"]}",
    };
    apr_size_t i;
    int k;

    for (i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        const char *t = bodies[i], *ea = NULL, *eb = NULL;
        apr_array_header_t *a, *b;
        hf_rc_t ra = hf_events_from_json(pool, t, strlen(t), 3, &a, &ea);
        hf_rc_t rb = hf_events_from_json_text(pool, t, strlen(t), 3, &b, &eb);

        ck_assert_msg(ra == rb, "%s: %d, %d", t, ra, rb);
        if (ra != HF_OK) {
            ck_assert_msg(!strcmp(ea, eb), "%s: %s, %s", t, ea, eb);
            continue;
        }
        ck_assert_int_eq(a->nelts, b->nelts);
        for (k = 0; k < a->nelts; k++) {
            const hf_event_t *x = APR_ARRAY_IDX(a, k, hf_event_t *);
            const hf_event_t *y = APR_ARRAY_IDX(b, k, hf_event_t *);
            ck_assert_ptr_null(y->json);
            ck_assert_ptr_eq(x->text, y->text);
            ck_assert_uint_eq(x->len, y->len);
            ck_assert_str_eq(x->type, y->type);
            ck_assert_str_eq(x->id, y->id);
            ck_assert_int_eq(x->index, y->index);
        }
    }
}
END_TEST

/* hf_env_build from an event's text: the variables of its tree, also when
 * a duplicate name or an odd surrogate pair sends it back to the tree. */
START_TEST(env_from_text_is_env_from_tree)
{
    static const char *const bodies[] = {
        "{\"type\":\"a.b.c\",\"x\":{\"y\":[1,\"\\u00e9\"]},"
        "\"n\":\"a\\u0000b\"}",
        "{\"type\":\"a.b.c\",\"x\":1,\"x\":{\"z\":2},\"w\":3}",
        "{\"type\":\"a.b.c\",\"A\":1,\"a\":2,\"event_id\":\"forged\"}",
        "{\"type\":\"a.b.c\",\"s\":\"\\ud836\\udc00\",\"t\":1}",
    };
    hf_batch_t batch = {1, 1, 0};
    apr_size_t i;
    int k;

    for (i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        const char *t = bodies[i], *err;
        apr_array_header_t *a, *b;
        apr_table_t *va, *vb;
        const apr_array_header_t *ea, *eb;
        int da, db;

        ck_assert_int_eq(hf_events_from_json(pool, t, strlen(t), 3, &a, &err),
                         HF_OK);
        ck_assert_int_eq(
            hf_events_from_json_text(pool, t, strlen(t), 3, &b, &err), HF_OK);
        va = hf_env_build(pool, APR_ARRAY_IDX(a, 0, hf_event_t *), &batch, &da);
        vb = hf_env_build(pool, APR_ARRAY_IDX(b, 0, hf_event_t *), &batch, &db);
        ck_assert_int_eq(da, db);
        ea = apr_table_elts(va);
        eb = apr_table_elts(vb);
        ck_assert_int_eq(ea->nelts, eb->nelts);
        for (k = 0; k < ea->nelts; k++) {
            const apr_table_entry_t *x =
                &APR_ARRAY_IDX(ea, k, apr_table_entry_t);
            const apr_table_entry_t *y =
                &APR_ARRAY_IDX(eb, k, apr_table_entry_t);
            ck_assert_str_eq(x->key, y->key);
            if (strcmp(x->key, "HRFLOW_DELIVERY_ID"))
                ck_assert_str_eq(x->val, y->val);
        }
    }
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
    tcase_add_test(tc, last_member_is_the_top_objects);
    tcase_add_loop_test(tc, text_walk_is_the_tree_walk, 0,
                        (int)(sizeof flat_cases / sizeof *flat_cases));
    tcase_add_test(tc, text_walk_values_as_written);
    tcase_add_test(tc, text_walk_deep_and_long);
    tcase_add_test(tc, text_type_is_json_cs);
    tcase_add_test(tc, events_from_text_are_events_from_trees);
    tcase_add_test(tc, env_from_text_is_env_from_tree);
    return s;
}

UNIT_MAIN(json_suite)
