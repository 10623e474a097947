/*
 * unit.h - what every unit test shares: APR set up once, a fresh pool per
 * test, and a main() that runs one suite and exits non-zero on failure.
 */
#ifndef UNIT_H
#define UNIT_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include "hrflow.h"

static apr_pool_t *pool;

static void pool_setup(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
}

static void pool_teardown(void)
{
    apr_pool_destroy(pool);
    apr_terminate();
}

/* One test case with the pool fixture, added to suite s. */
static inline TCase *unit_case(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, pool_setup, pool_teardown);
    suite_add_tcase(s, tc);
    return tc;
}

#define UNIT_MAIN(make_suite)                                        \
    int main(void)                                                   \
    {                                                                \
        SRunner *sr = srunner_create(make_suite());                  \
        int failed;                                                  \
        srunner_run_all(sr, CK_NORMAL);                              \
        failed = srunner_ntests_failed(sr);                          \
        srunner_free(sr);                                            \
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;                 \
    }

#endif
