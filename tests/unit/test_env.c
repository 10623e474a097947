/* test_env.c - variables of SPEC section 4, and their limits. */
#include <malloc.h>
#include "unit.h"

static apr_table_t *vars_of(const char *json, int *dropped)
{
    apr_array_header_t *evs;
    const char *err;
    hf_batch_t batch = {3, 1, 1};

    ck_assert_int_eq(hf_events_from_json(pool, json, strlen(json), 100, &evs,
                                         &err), HF_OK);
    return hf_env_build(pool, APR_ARRAY_IDX(evs, 0, hf_event_t *), &batch,
                        dropped);
}

START_TEST(spec_examples)
{
    int dropped;
    apr_table_t *v = vars_of(
        "{\"type\":\"profile.parsing.success\",\"origin\":\"api\","
        "\"message\":\"ok\",\"profile\":{\"key\":\"pk\",\"source\":{\"key\":"
        "\"sk\"}},\"job\":{\"key\":\"jk\",\"board\":{\"key\":\"bk\"}},"
        "\"tags\":[{\"name\":\"a\"},{\"name\":\"b\"}]}",
        &dropped);

    ck_assert_int_eq(dropped, 0);
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_TYPE"), "profile.parsing.success");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_ORIGIN"), "api");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_MESSAGE"), "ok");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_PROFILE_KEY"), "pk");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_PROFILE_SOURCE_KEY"), "sk");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_JOB_KEY"), "jk");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_JOB_BOARD_KEY"), "bk");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_TAGS_1_NAME"), "b");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_EVENT_OBJECT"), "profile");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_EVENT_ACTION"), "parsing");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_EVENT_STATUS"), "success");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_EVENT_INDEX"), "0");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_EVENT_COUNT"), "3");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_SIGNATURE"), "verified");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_ATTEMPT"), "1");
    ck_assert_uint_eq(strlen(apr_table_get(v, "HRFLOW_EVENT_ID")), 64);
    ck_assert_uint_eq(strlen(apr_table_get(v, "HRFLOW_DELIVERY_ID")), 32);
}
END_TEST

START_TEST(scalars_and_names)
{
    int dropped;
    apr_table_t *v = vars_of(
        "{\"type\":\"a.b.c\",\"n\":1.50,\"i\":-3,\"t\":true,\"f\":false,"
        "\"z\":null,\"we-ird.k\u00e9y\":\"x\",\"line\":\"a\\nb\"}",
        &dropped);

    ck_assert_str_eq(apr_table_get(v, "HRFLOW_N"), "1.50");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_I"), "-3");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_T"), "true");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_F"), "false");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_Z"), "");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_WE_IRD_K__Y"), "x");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_LINE"), "a\nb");
}
END_TEST

START_TEST(event_variables_win_a_clash)
{
    int dropped;
    apr_table_t *v = vars_of(
        "{\"type\":\"a.b.c\",\"event\":{\"id\":\"forged\"},"
        "\"signature\":\"verified-by-me\"}",
        &dropped);

    ck_assert_str_ne(apr_table_get(v, "HRFLOW_EVENT_ID"), "forged");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_SIGNATURE"), "verified");
}
END_TEST

START_TEST(variable_count_limit)
{
    apr_array_header_t *parts = apr_array_make(pool, 700, sizeof(char *));
    int i, dropped;
    apr_table_t *v;

    APR_ARRAY_PUSH(parts, char *) = "{\"type\":\"a.b.c\"";
    for (i = 0; i < 600; i++)
        APR_ARRAY_PUSH(parts, char *) = apr_psprintf(pool, ",\"k%d\":%d", i, i);
    APR_ARRAY_PUSH(parts, char *) = "}";
    v = vars_of(apr_array_pstrcat(pool, parts, 0), &dropped);
    ck_assert_int_eq(dropped, 601 - HF_MAX_VARS);
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_TYPE"), "a.b.c");
    ck_assert_ptr_null(apr_table_get(v, "HRFLOW_K599"));
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_EVENT_COUNT"), "3");
}
END_TEST

START_TEST(value_bytes_limit)
{
    char *big = apr_palloc(pool, 40001);
    int dropped;
    apr_table_t *v;

    memset(big, 'x', 40000);
    big[40000] = '\0';
    v = vars_of(apr_psprintf(pool,
                             "{\"type\":\"a.b.c\",\"a\":\"%s\",\"b\":\"%s\","
                             "\"c\":\"small\"}",
                             big, big),
                &dropped);
    ck_assert_int_eq(dropped, 1);
    ck_assert_uint_eq(strlen(apr_table_get(v, "HRFLOW_A")), 40000);
    ck_assert_ptr_null(apr_table_get(v, "HRFLOW_B"));
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_C"), "small");
}
END_TEST

/* Every environment string stays far below the kernel's 128 KiB limit on
 * one string (MAX_ARG_STRLEN): the budget counts names too. */
static void assert_env_fits(const apr_table_t *v)
{
    const apr_array_header_t *a = apr_table_elts(v);
    const apr_table_entry_t *e = (const apr_table_entry_t *)a->elts;
    apr_size_t total = 0;
    int i;

    for (i = 0; i < a->nelts; i++) {
        ck_assert_uint_le(strlen(e[i].key), 1024);
        total += strlen(e[i].key) + strlen(e[i].val);
    }
    ck_assert_uint_le(total, 65536 + 1024);
}

START_TEST(long_name_left_out)
{
    apr_size_t n = 200 * 1024;
    char *key = apr_palloc(pool, n + 1);
    int dropped;
    apr_table_t *v;

    memset(key, 'k', n);
    key[n] = '\0';
    v = vars_of(apr_psprintf(pool, "{\"type\":\"a.b.c\",\"%s\":1,"
                                   "\"nested\":{\"%s\":{\"x\":2}},"
                                   "\"after\":\"kept\"}",
                             key, key),
                &dropped);
    ck_assert_int_eq(dropped, 2);
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_AFTER"), "kept");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_TYPE"), "a.b.c");
    assert_env_fits(v);
}
END_TEST

START_TEST(names_count_in_the_byte_budget)
{
    apr_array_header_t *parts = apr_array_make(pool, 300, sizeof(char *));
    char *name = apr_palloc(pool, 1001);
    int i, dropped;
    apr_table_t *v;

    memset(name, 'n', 1000);
    name[1000] = '\0';
    APR_ARRAY_PUSH(parts, char *) = "{\"type\":\"a.b.c\"";
    for (i = 0; i < 200; i++)
        APR_ARRAY_PUSH(parts, char *) = apr_psprintf(pool, ",\"%s%d\":1",
                                                     name, i);
    APR_ARRAY_PUSH(parts, char *) = "}";
    v = vars_of(apr_array_pstrcat(pool, parts, 0), &dropped);
    /* 200 names of about 1 KiB: only some 64 of them fit in 64 KiB. */
    ck_assert_int_gt(dropped, 100);
    ck_assert_int_lt(dropped, 150);
    assert_env_fits(v);
}
END_TEST

START_TEST(integers_at_the_edges_as_written)
{
    int dropped;
    apr_table_t *v = vars_of(
        "{\"type\":\"a.b.c\",\"u\":18446744073709551615,\"max\":9223372036854775807,"
        "\"min\":-9223372036854775808,\"e\":1e400}",
        &dropped);

    ck_assert_str_eq(apr_table_get(v, "HRFLOW_U"), "18446744073709551615");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_MAX"), "9223372036854775807");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_MIN"), "-9223372036854775808");
    ck_assert_str_eq(apr_table_get(v, "HRFLOW_E"), "1e400");
}
END_TEST

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();

    return m.uordblks + m.hblkhd;
}

/* A body of as many leaves as a body may hold: the variables cost what the
 * caps allow, not what the leaves past them would.  (Measured as heap
 * growth; the JSON tree is built before the measure starts.) */
START_TEST(cost_stops_at_the_caps)
{
    apr_size_t n = HF_JSON_MAX_VALUES - 3, i, len = 0;
    char *body = apr_palloc(pool, 20 + 2 * n + 3);
    apr_array_header_t *evs;
    const char *err;
    hf_batch_t batch = {1, 1, 1};
    apr_pool_t *sub;
    size_t before;
    int dropped;

    len = (apr_size_t)sprintf(body, "{\"type\":\"a.b.c\",\"x\":[");
    for (i = 0; i < n; i++) {
        body[len++] = i ? ',' : '0';
        if (i)
            body[len++] = '0';
    }
    memcpy(body + len, "]}", 3);
    len += 2;
    ck_assert_int_eq(hf_events_from_json(pool, body, len, 100, &evs, &err),
                     HF_OK);
    apr_pool_create(&sub, pool);
    before = heap_in_use();
    hf_env_build(sub, APR_ARRAY_IDX(evs, 0, hf_event_t *), &batch, &dropped);
    ck_assert_int_eq(dropped, (int)(n + 1 - HF_MAX_VARS));
    ck_assert_uint_lt(heap_in_use() - before, 1024 * 1024);
}
END_TEST

START_TEST(env_block_has_path_first)
{
    apr_table_t *t = apr_table_make(pool, 2);
    const char **env;

    apr_table_set(t, "HRFLOW_TYPE", "a.b.c");
    env = hf_env_block(pool, t);
    ck_assert_str_eq(env[0], "PATH=" HF_HANDLER_PATH);
    ck_assert_str_eq(env[1], "HRFLOW_TYPE=a.b.c");
    ck_assert_ptr_null(env[2]);
}
END_TEST

static Suite *env_suite(void)
{
    Suite *s = suite_create("env");
    TCase *tc = unit_case(s, "env");

    tcase_add_test(tc, spec_examples);
    tcase_add_test(tc, scalars_and_names);
    tcase_add_test(tc, event_variables_win_a_clash);
    tcase_add_test(tc, variable_count_limit);
    tcase_add_test(tc, value_bytes_limit);
    tcase_add_test(tc, long_name_left_out);
    tcase_add_test(tc, names_count_in_the_byte_budget);
    tcase_add_test(tc, integers_at_the_edges_as_written);
    tcase_add_test(tc, cost_stops_at_the_caps);
    tcase_add_test(tc, env_block_has_path_first);
    return s;
}

UNIT_MAIN(env_suite)
