/* test_env.c - variables of SPEC section 4, and their limits. */
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
    tcase_add_test(tc, env_block_has_path_first);
    return s;
}

UNIT_MAIN(env_suite)
