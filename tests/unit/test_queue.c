/* test_queue.c - the queue layer's parts that need no server: passwords
 * kept out of every message, array literals, a missing server reported. */
#include <unistd.h>
#include <stdio.h>
#include "unit.h"
#include "hf_queue_pg.h"

START_TEST(url_password_found)
{
    ck_assert_str_eq(hf_queue_url_password(pool,
                         "postgresql://u:sekret@db1,db2/hrflow"), "sekret");
    ck_assert_str_eq(hf_queue_url_password(pool,
                         "postgres://u:p@ss@db/x?sslmode=verify-full"),
                     "p@ss");
    ck_assert_str_eq(hf_queue_url_password(pool,
                         "postgresql://u@db/x?sslmode=require&password=pw1"),
                     "pw1");
    ck_assert_str_eq(hf_queue_url_password(pool,
                         "host=db password=pw2 dbname=x"), "pw2");
    ck_assert_ptr_null(hf_queue_url_password(pool, "postgresql://u@db/x"));
    ck_assert_ptr_null(hf_queue_url_password(pool,
                           "postgresql://db/x?mypassword=no"));
}
END_TEST

START_TEST(url_redacted)
{
    ck_assert_str_eq(hf_queue_url_redact(pool, "postgresql://u:sekret@db/x"),
                     "postgresql://u:***@db/x");
    ck_assert_str_eq(hf_queue_url_redact(pool, "postgresql://u@db/x"),
                     "postgresql://u@db/x");
}
END_TEST

START_TEST(array_literal_quotes)
{
    const char *items[] = {"/bin/a b", "q\"uote", "back\\slash", NULL};

    ck_assert_str_eq(hf_queue_array(pool, items, 4),
                     "{\"/bin/a b\",\"q\\\"uote\",\"back\\\\slash\",NULL}");
    ck_assert_str_eq(hf_queue_array(pool, items, 0), "{}");
}
END_TEST

/* A commit group's arrays (a key, program, timeout per event, up to
 * ThreadsPerChild x HrflowMaxEvents of them) cost memory in proportion to
 * their size, not its square: a burst of full batches must not make the
 * leader's request allocate hundreds of megabytes. */
/* The process's mapped memory in bytes (APR's allocator may take its
 * blocks with mmap, past malloc's counts). */
static size_t heap_in_use(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

START_TEST(array_literal_linear_memory)
{
    enum { N = 2500, LEN = 100 };
    const char **items = calloc(N, sizeof *items);
    apr_allocator_t *a;
    apr_pool_t *p;
    size_t before, used;
    const char *out;
    int i;

    for (i = 0; i < N; i++) {
        char *s = malloc(LEN + 1);
        snprintf(s, LEN + 1, "%0*d", LEN, i);
        items[i] = s;
    }
    apr_allocator_create(&a);
    apr_pool_create_ex(&p, NULL, NULL, a);
    apr_allocator_owner_set(a, p);
    before = heap_in_use();
    out = hf_queue_array(p, items, N);
    used = heap_in_use() - before;
    ck_assert_uint_eq(strlen(out), 2 + N * (LEN + 3) - 1);
    ck_assert_uint_lt(used, 16 * strlen(out));
    apr_pool_destroy(p);
    for (i = 0; i < N; i++)
        free((void *)items[i]);
    free(items);
}
END_TEST

/* libpq quotes a URI it cannot parse, password and all: the reason must
 * not. */
START_TEST(reason_never_has_the_password)
{
    const char *urls[] = {"postgresql://u:sekret@[bad/x",
                          "postgresql://u:sek%72et@[bad/x",
                          "postgresql://u@[bad/x?password=sekret", NULL};
    int i;

    for (i = 0; urls[i]; i++) {
        hf_queue_spec_t spec = {urls[i], "sekret", "hrflow", 1000, "test"};
        hf_queue_t *q = NULL;
        const char *err = hf_queue_open(pool, &spec, &q);
        ck_assert_ptr_nonnull(err);
        ck_assert_ptr_nonnull(q);
        ck_assert_msg(strstr(err, "sekret") == NULL, "%s", err);
        ck_assert_msg(strstr(err, "cannot connect") != NULL, "%s", err);
        ck_assert(!hf_queue_ok(q));
        hf_queue_close(q);
    }
}
END_TEST

START_TEST(bad_name_refused)
{
    hf_queue_spec_t spec = {"postgresql://u@[bad/x", NULL, "Bad-Name", 1000,
                            "test"};
    hf_queue_t *q = NULL;
    const char *err = hf_queue_open(pool, &spec, &q);

    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "HrflowQueueName") != NULL, "%s", err);
    /* A reconnection cannot make it usable, nor put it in SQL. */
    err = hf_queue_reset(pool, q);
    ck_assert_msg(err && strstr(err, "HrflowQueueName") != NULL, "%s", err);
    ck_assert(!hf_queue_ok(q));
    hf_queue_close(q);
}
END_TEST

static Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = unit_case(s, "queue");

    tcase_add_test(tc, url_password_found);
    tcase_add_test(tc, url_redacted);
    tcase_add_test(tc, array_literal_quotes);
    tcase_add_test(tc, array_literal_linear_memory);
    tcase_add_test(tc, reason_never_has_the_password);
    tcase_add_test(tc, bad_name_refused);
    return s;
}

UNIT_MAIN(queue_suite)
