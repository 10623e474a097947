/* test_route.c - exact beats pattern, first pattern wins. */
#include "unit.h"

static apr_array_header_t *handlers;

static void add(const char *pattern, const char *program)
{
    hf_handler_t *h = apr_array_push(handlers);
    const char **argv = apr_pcalloc(pool, 2 * sizeof *argv);

    argv[0] = program;
    h->pattern = pattern;
    h->exact = strpbrk(pattern, "*?[") == NULL;
    h->argv = argv;
}

static const char *route(const char *type)
{
    const hf_handler_t *h = hf_route(handlers, type);
    return h ? h->argv[0] : NULL;
}

START_TEST(exact_beats_pattern_first_pattern_wins)
{
    handlers = apr_array_make(pool, 4, sizeof(hf_handler_t));
    add("job.*", "jobs");
    add("*.error", "errors");
    add("*", "all");
    add("job.scoring.error", "exact");
    ck_assert_str_eq(route("job.scoring.error"), "exact");
    ck_assert_str_eq(route("job.parsing.error"), "jobs");
    ck_assert_str_eq(route("profile.parsing.error"), "errors");
    ck_assert_str_eq(route("profile.parsing.success"), "all");
}
END_TEST

START_TEST(no_match)
{
    handlers = apr_array_make(pool, 4, sizeof(hf_handler_t));
    add("job.*", "jobs");
    add("profile.parsing.success", "p");
    ck_assert_ptr_null(route("profile.parsing.error"));
    ck_assert_ptr_null(hf_route(NULL, "a.b.c"));
}
END_TEST

START_TEST(classes_and_question_mark)
{
    handlers = apr_array_make(pool, 4, sizeof(hf_handler_t));
    add("profile.[ps]*.success", "ps");
    add("job.?????.*", "five");
    ck_assert_str_eq(route("profile.storing.success"), "ps");
    ck_assert_ptr_null(route("profile.tagging.success"));
    ck_assert_str_eq(route("job.train.start"), "five");
}
END_TEST

START_TEST(pattern_check)
{
    ck_assert_ptr_null(hf_route_pattern_check("*"));
    ck_assert_ptr_null(hf_route_pattern_check("job.*"));
    ck_assert_ptr_null(hf_route_pattern_check("profile.[ps]*.success"));
    ck_assert_ptr_nonnull(hf_route_pattern_check(""));
    ck_assert_ptr_nonnull(hf_route_pattern_check("Job.*"));
    ck_assert_ptr_nonnull(hf_route_pattern_check("job.["));
    ck_assert_ptr_nonnull(hf_route_pattern_check("job.]"));
    ck_assert_ptr_nonnull(hf_route_pattern_check("job/*"));
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = unit_case(s, "route");

    tcase_add_test(tc, exact_beats_pattern_first_pattern_wins);
    tcase_add_test(tc, no_match);
    tcase_add_test(tc, classes_and_question_mark);
    tcase_add_test(tc, pattern_check);
    return s;
}

UNIT_MAIN(route_suite)
