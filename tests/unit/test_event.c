/* test_event.c - bodies into events (SPEC section 1). */
#include <malloc.h>
#include <openssl/sha.h>
#include "unit.h"

static const char *seed_form =
    "type=profile.parsing.success&origin=api&message=profile+parsing+succeed"
    "&profile=%7B%22key%22%3A+%22d82%22%2C+%22source%22%3A+%7B%22key%22%3A+"
    "%22d90%22%7D%7D";

static hf_event_t *event_at(apr_array_header_t *evs, int i)
{
    return APR_ARRAY_IDX(evs, i, hf_event_t *);
}

static const char *sha256_hex(const char *s, apr_size_t n)
{
    unsigned char d[32];
    char *hex = apr_palloc(pool, 65);

    SHA256((const unsigned char *)s, n, d);
    hf_codec_hex_encode(d, 32, hex);
    return hex;
}

START_TEST(type_shape)
{
    ck_assert(hf_event_type_valid("profile.parsing.success"));
    ck_assert(hf_event_type_valid("job.train.start"));
    ck_assert(hf_event_type_valid("a_b.c_.d"));
    ck_assert(!hf_event_type_valid("profile.parsing"));
    ck_assert(!hf_event_type_valid("profile.parsing.success.x"));
    ck_assert(!hf_event_type_valid("Profile.parsing.success"));
    ck_assert(!hf_event_type_valid("profile..success"));
    ck_assert(!hf_event_type_valid("profile.parsing.succ3ss"));
    ck_assert(!hf_event_type_valid(".a.b"));
    ck_assert(!hf_event_type_valid("a.b."));
    ck_assert(!hf_event_type_valid(""));
    ck_assert(!hf_event_type_valid(NULL));
}
END_TEST

START_TEST(content_types)
{
    ck_assert_int_eq(hf_event_body_kind("application/json"), HF_BODY_JSON);
    ck_assert_int_eq(hf_event_body_kind("Application/JSON; charset=utf-8"),
                     HF_BODY_JSON);
    ck_assert_int_eq(hf_event_body_kind("application/x-www-form-urlencoded"),
                     HF_BODY_FORM);
    ck_assert_int_eq(hf_event_body_kind("application/jsonx"), HF_BODY_OTHER);
    ck_assert_int_eq(hf_event_body_kind("text/plain"), HF_BODY_OTHER);
    ck_assert_int_eq(hf_event_body_kind(NULL), HF_BODY_OTHER);
}
END_TEST

START_TEST(seed_form_body)
{
    apr_array_header_t *evs;
    const char *err = NULL;
    hf_event_t *ev;

    ck_assert_int_eq(hf_events_from_form(pool, seed_form, strlen(seed_form),
                                         &evs, &err), HF_OK);
    ck_assert_int_eq(evs->nelts, 1);
    ev = event_at(evs, 0);
    ck_assert_str_eq(ev->type, "profile.parsing.success");
    ck_assert_str_eq(hf_json_get_string(ev->json, "message"),
                     "profile parsing succeed");
    ck_assert_str_eq(ev->id, sha256_hex(ev->text, ev->len));
    ck_assert_ptr_nonnull(strstr(ev->text, "\"source\":{\"key\":\"d90\"}"));
}
END_TEST

START_TEST(form_rejects)
{
    static const char *bad[] = {
        "type=a.b.c&profile=notjson", "type=a.b.c&job=%5B1%5D", "type=a.b",
        "origin=api", "type=a.b.c&x=%zz", "=x&type=a.b.c", ""};
    apr_array_header_t *evs;
    const char *err;
    apr_size_t i;

    for (i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(hf_events_from_form(pool, bad[i], strlen(bad[i]), &evs,
                                          &err) == HF_E_MALFORMED,
                      "%s", bad[i]);
}
END_TEST

START_TEST(json_object_id_is_hash_of_text)
{
    const char *body = "  {\"type\": \"job.storing.update\", \"job\": {}}\n";
    apr_array_header_t *evs;
    const char *err;
    hf_event_t *ev;

    ck_assert_int_eq(hf_events_from_json(pool, body, strlen(body), 100, &evs,
                                         &err), HF_OK);
    ev = event_at(evs, 0);
    ck_assert_uint_eq(ev->len, strlen(body) - 3);
    ck_assert_str_eq(ev->id, sha256_hex(body + 2, strlen(body) - 3));
    ck_assert_uint_eq(strlen(ev->delivery_id), 32);
}
END_TEST

START_TEST(json_batch_keeps_order_and_spans)
{
    const char *body = "[{\"type\":\"a.b.c\",\"s\":\"x,]}\\\"\"} , "
                       "{\"type\":\"d.e.f\",\"n\":[1,{\"k\":2}]}]";
    apr_array_header_t *evs;
    const char *err;

    ck_assert_int_eq(hf_events_from_json(pool, body, strlen(body), 100, &evs,
                                         &err), HF_OK);
    ck_assert_int_eq(evs->nelts, 2);
    ck_assert_str_eq(event_at(evs, 0)->type, "a.b.c");
    ck_assert_str_eq(event_at(evs, 1)->type, "d.e.f");
    ck_assert_int_eq(event_at(evs, 1)->index, 1);
    ck_assert_str_eq(apr_pstrmemdup(pool, event_at(evs, 0)->text,
                                    event_at(evs, 0)->len),
                     "{\"type\":\"a.b.c\",\"s\":\"x,]}\\\"\"}");
    ck_assert_str_eq(apr_pstrmemdup(pool, event_at(evs, 1)->text,
                                    event_at(evs, 1)->len),
                     "{\"type\":\"d.e.f\",\"n\":[1,{\"k\":2}]}");
    ck_assert_str_ne(event_at(evs, 0)->delivery_id,
                     event_at(evs, 1)->delivery_id);
}
END_TEST

START_TEST(identical_events_share_id_not_delivery)
{
    const char *body = "[{\"type\":\"a.b.c\"},{\"type\":\"a.b.c\"}]";
    apr_array_header_t *evs;
    const char *err;

    ck_assert_int_eq(hf_events_from_json(pool, body, strlen(body), 100, &evs,
                                         &err), HF_OK);
    ck_assert_str_eq(event_at(evs, 0)->id, event_at(evs, 1)->id);
    ck_assert_str_ne(event_at(evs, 0)->delivery_id,
                     event_at(evs, 1)->delivery_id);
}
END_TEST

START_TEST(json_rejects)
{
    static const char *bad[] = {
        "", "{", "[]", "3", "\"a.b.c\"", "{\"type\":\"a.b\"}",
        "{\"type\":1}", "[{\"type\":\"a.b.c\"},2]", "{\"type\":\"a.b.c\"} x",
        "{\"type\":\"a.b.c\",}", "[{\"type\":\"a.b.c\"},{\"type\":\"BAD\"}]",
        /* json-c takes single quotes: the first made the batch splitter
         * loop for ever, the second ran a handler on a fragment. */
        "[{'}':1}]", "[{'\"':1,\"m\":\"}]\",\"type\":\"a.b.c\"}]",
        "{\"type\":\"a.b.c\",\"n\":NaN}", "{\"type\":\"a.b.c\",\"m\":\"\x01\"}"};
    apr_array_header_t *evs;
    const char *err;
    apr_size_t i;

    for (i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(hf_events_from_json(pool, bad[i], strlen(bad[i]), 100,
                                          &evs, &err) == HF_E_MALFORMED,
                      "%s", bad[i]);
}
END_TEST

START_TEST(json_nul_byte_rejected)
{
    const char body[] = "{\"type\":\"a.b.c\"}\0";
    apr_array_header_t *evs;
    const char *err;

    ck_assert_int_eq(hf_events_from_json(pool, body, sizeof body - 1, 100,
                                         &evs, &err), HF_E_MALFORMED);
}
END_TEST

START_TEST(depth_limit)
{
    char *deep = apr_palloc(pool, 200);
    char *s = deep;
    apr_array_header_t *evs;
    const char *err;
    int i;

    strcpy(s, "{\"type\":\"a.b.c\",\"x\":");
    s += strlen(s);
    for (i = 0; i < HF_JSON_MAX_DEPTH + 1; i++)
        *s++ = '[';
    for (i = 0; i < HF_JSON_MAX_DEPTH + 1; i++)
        *s++ = ']';
    strcpy(s, "}");
    ck_assert_int_eq(hf_events_from_json(pool, deep, strlen(deep), 100, &evs,
                                         &err), HF_E_MALFORMED);
}
END_TEST

START_TEST(batch_limit)
{
    const char *body = "[{\"type\":\"a.b.c\"},{\"type\":\"a.b.c\"},"
                       "{\"type\":\"a.b.c\"}]";
    apr_array_header_t *evs;
    const char *err;

    ck_assert_int_eq(hf_events_from_json(pool, body, strlen(body), 2, &evs,
                                         &err), HF_E_TOO_LARGE);
    ck_assert_str_eq(err, "too_many_events");
    ck_assert_int_eq(hf_events_from_json(pool, body, strlen(body), 3, &evs,
                                         &err), HF_OK);
}
END_TEST

START_TEST(type_length_is_bounded)
{
    char *type = apr_palloc(pool, 300 * 1024);
    apr_size_t n;

    /* a.b. and a last part up to 255 bytes in all. */
    memcpy(type, "a.b.", 4);
    memset(type + 4, 'c', 300 * 1024 - 5);
    type[255] = '\0';
    ck_assert(hf_event_type_valid(type));
    type[255] = 'c';
    type[256] = '\0';
    ck_assert(!hf_event_type_valid(type));
    n = 200 * 1024;
    type[n] = '\0';
    ck_assert(!hf_event_type_valid(type));
}
END_TEST

START_TEST(form_json_fields_nest_within_the_event_limit)
{
    /* profile={"a":{"a":...{}}}: the event object adds one level. */
    apr_array_header_t *evs;
    const char *err;
    int levels;

    for (levels = HF_JSON_MAX_DEPTH - 1; levels <= HF_JSON_MAX_DEPTH;
         levels++) {
        char *body = apr_pstrdup(pool, "type=a.b.c&profile=");
        int i;
        for (i = 1; i < levels; i++)
            body = apr_pstrcat(pool, body, "%7B%22a%22%3A", NULL);
        body = apr_pstrcat(pool, body, "%7B%7D", NULL);
        for (i = 1; i < levels; i++)
            body = apr_pstrcat(pool, body, "%7D", NULL);
        ck_assert_int_eq(hf_events_from_form(pool, body, strlen(body), &evs,
                                             &err),
                         levels < HF_JSON_MAX_DEPTH ? HF_OK : HF_E_MALFORMED);
    }
}
END_TEST

START_TEST(form_fields_must_be_utf8)
{
    apr_array_header_t *evs;
    const char *err;
    const char *ok = "type=a.b.c&message=caf%C3%A9";
    const char *bad = "type=a.b.c&message=caf%E9";

    ck_assert_int_eq(hf_events_from_form(pool, ok, strlen(ok), &evs, &err),
                     HF_OK);
    ck_assert_int_eq(hf_events_from_form(pool, bad, strlen(bad), &evs, &err),
                     HF_E_MALFORMED);
}
END_TEST

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();

    return m.uordblks + m.hblkhd;
}

/* head, then n copies of item joined by commas, then tail. */
static char *repeated(const char *head, const char *item, apr_size_t n,
                      const char *tail, apr_size_t *len)
{
    apr_size_t h = strlen(head), k = strlen(item), t = strlen(tail), i;
    char *s = apr_palloc(pool, h + n * (k + 1) + t + 1);

    memcpy(s, head, h);
    *len = h;
    for (i = 0; i < n; i++) {
        if (i)
            s[(*len)++] = ',';
        memcpy(s + *len, item, k);
        *len += k;
    }
    memcpy(s + *len, tail, t + 1);
    *len += t;
    return s;
}

/* What hf_events_from_json does to the heap for body: its answer, and the
 * growth while it ran (the pool is destroyed after). */
static hf_rc_t parse_cost(const char *body, apr_size_t len, const char **err,
                          size_t *grew)
{
    apr_pool_t *sub;
    apr_array_header_t *evs;
    size_t before, peak;
    hf_rc_t rc;

    apr_pool_create(&sub, pool);
    before = heap_in_use();
    rc = hf_events_from_json(sub, body, len, 100, &evs, err);
    peak = heap_in_use();
    *grew = peak > before ? peak - before : 0;
    if (rc != HF_OK)
        *err = apr_pstrdup(pool, *err);
    apr_pool_destroy(sub);
    return rc;
}

/* 1 MiB of "[{},{},...]": refused by its count before json-c builds the
 * 350k hash tables (~275 MB) it would cost. */
START_TEST(huge_batch_refused_before_any_tree)
{
    apr_size_t len;
    const char *body = repeated("[", "{}", 350000, "]", &len), *err;
    size_t grew;

    ck_assert_int_eq(parse_cost(body, len, &err, &grew), HF_E_TOO_LARGE);
    ck_assert_str_eq(err, "too_many_events");
    ck_assert_uint_lt(grew, 1024 * 1024);
}
END_TEST

/* One event of many empty containers, or of many scalars: over the caps it
 * is 413 too_many_values, with no tree built. */
START_TEST(too_many_values_refused_before_any_tree)
{
    const char *head = "{\"type\":\"a.b.c\",\"a\":[", *err, *body;
    apr_size_t len;
    size_t grew;

    body = repeated(head, "{}", 350000, "]}", &len);
    ck_assert_int_eq(parse_cost(body, len, &err, &grew), HF_E_TOO_LARGE);
    ck_assert_str_eq(err, "too_many_values");
    ck_assert_uint_lt(grew, 1024 * 1024);
    body = repeated(head, "[]", HF_JSON_MAX_CONTAINERS, "]}", &len);
    ck_assert_int_eq(parse_cost(body, len, &err, &grew), HF_E_TOO_LARGE);
    ck_assert_str_eq(err, "too_many_values");
    body = repeated(head, "0", HF_JSON_MAX_VALUES, "]}", &len);
    ck_assert_int_eq(parse_cost(body, len, &err, &grew), HF_E_TOO_LARGE);
    ck_assert_str_eq(err, "too_many_values");
    /* At the caps exactly: the event object, "type" and the array count. */
    body = repeated(head, "0", HF_JSON_MAX_VALUES - 3, "]}", &len);
    ck_assert_int_eq(parse_cost(body, len, &err, &grew), HF_OK);
    body = repeated(head, "[]", HF_JSON_MAX_CONTAINERS - 2, "]}", &len);
    ck_assert_int_eq(parse_cost(body, len, &err, &grew), HF_OK);
}
END_TEST

/* json-c cuts a member name at \u0000: "type\u0000" would replace "type"
 * and route on another type than the handler's JSON shows. */
START_TEST(nul_in_member_name_refused)
{
    static const char *const bodies[] = {
        "{\"type\":\"job.deleted.success\","
        "\"type\\u0000\":\"profile.parse.success\"}",
        "{\"type\":\"a.b.c\",\"profile\":{\"key\":\"k\",\"key\\u0000x\":1}}",
        "[{\"type\":\"a.b.c\",\"\\u0000\":1}]",
    };
    const char *value = "{\"type\":\"a.b.c\",\"m\":\"x\\u0000\"}";
    apr_array_header_t *evs;
    const char *err;
    size_t i;

    for (i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        ck_assert_int_eq(hf_events_from_json(pool, bodies[i],
                                             strlen(bodies[i]), 100, &evs,
                                             &err), HF_E_MALFORMED);
        ck_assert_str_eq(err, "invalid_json");
    }
    /* In a value it is still allowed (cut in the environment only). */
    ck_assert_int_eq(hf_events_from_json(pool, value, strlen(value), 100,
                                         &evs, &err), HF_OK);
}
END_TEST

static Suite *event_suite(void)
{
    Suite *s = suite_create("event");
    TCase *tc = unit_case(s, "event");

    tcase_add_test(tc, type_shape);
    tcase_add_test(tc, content_types);
    tcase_add_test(tc, seed_form_body);
    tcase_add_test(tc, form_rejects);
    tcase_add_test(tc, json_object_id_is_hash_of_text);
    tcase_add_test(tc, json_batch_keeps_order_and_spans);
    tcase_add_test(tc, identical_events_share_id_not_delivery);
    tcase_add_test(tc, json_rejects);
    tcase_add_test(tc, json_nul_byte_rejected);
    tcase_add_test(tc, depth_limit);
    tcase_add_test(tc, batch_limit);
    tcase_add_test(tc, type_length_is_bounded);
    tcase_add_test(tc, form_json_fields_nest_within_the_event_limit);
    tcase_add_test(tc, form_fields_must_be_utf8);
    tcase_add_test(tc, huge_batch_refused_before_any_tree);
    tcase_add_test(tc, too_many_values_refused_before_any_tree);
    tcase_add_test(tc, nul_in_member_name_refused);
    return s;
}

UNIT_MAIN(event_suite)
