/*
 * test_dispatch.c - the spool's dispatcher as a whole (hf_dispatch_run:
 * the scheduler, the spool store, the argv target) on a real spool, with
 * handlers that note when they start and end.
 */
#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_thread_proc.h>
#include "unit.h"

static const char *make_dir(void)
{
    char *tmpl = apr_pstrdup(pool, "/tmp/hrflow-unit-XXXXXX");

    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    ck_assert_ptr_null(hf_spool_prepare(pool, tmpl, -1, -1));
    return tmpl;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat st;

    while (d && (de = readdir(d))) {
        const char *path = apr_pstrcat(pool, dir, "/", de->d_name, NULL);
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Writes an event for handler argv into new/ as a receiver does (written
 * aside, then renamed in); received sets its place in arrival order. */
static void put_event(const char *dir, apr_time_t received, const char *key,
                      const char *const *argv, int n)
{
    hf_envelope_t e;
    const char *name, *tmp;
    char *text;
    apr_size_t len;

    memset(&e, 0, sizeof e);
    e.delivery_id = apr_psprintf(pool, "%032x", n);
    e.event_id = "0";
    e.type = "profile.parsing.success";
    e.order_key = key;
    e.received = received;
    e.count = 1;
    e.timeout = 60;
    e.argv = argv;
    e.text = "{\"type\":\"profile.parsing.success\"}";
    e.len = strlen(e.text);
    name = hf_spool_event_name(pool, received, 0, e.delivery_id, key);
    text = hf_spool_envelope_encode(pool, &e, &len);
    tmp = hf_spool_path(pool, dir, "tmp", name);
    ck_assert_int_eq(hf_spool_write(tmp, text, len, 0), 0);
    ck_assert_int_eq(rename(tmp, hf_spool_path(pool, dir, "new", name)), 0);
}

static char *read_log(const char *path)
{
    char *text;
    apr_size_t len;

    if (hf_spool_read_file(pool, path, &text, &len) != NULL)
        return "";
    return text;
}

/* Waits until the handlers' log holds line. */
static void wait_for(const char *log, const char *line)
{
    while (!strstr(read_log(log), line))
        usleep(10000);
}

typedef struct {
    hf_dispatch_spec_t spec;
    atomic_int stop;
} dispatcher_t;

static void quiet(void *ctx, int level, const char *msg)
{
    (void)ctx;
    (void)level;
    (void)msg;
}

static void *APR_THREAD_FUNC dispatch(apr_thread_t *t, void *data)
{
    dispatcher_t *d = data;
    apr_pool_t *p;

    (void)t;
    apr_pool_create(&p, NULL);
    ck_assert_int_eq(hf_dispatch_run(p, &d->spec), 0);
    apr_pool_destroy(p);
    return NULL;
}

/* Two receivers' events of one key can reach new/ out of name order (the
 * later-named one committed first).  One that arrives while a later-named
 * event of its key runs waits for it: a key never runs twice at once.
 * Here B runs (and waits to be released); A, named before B, and C, of
 * another key, arrive; C runs and ends, then B is released: A must start
 * only after B has ended. */
START_TEST(late_arrival_waits_for_the_running_event_of_its_key)
{
    const char *dir = make_dir();
    const char *log = apr_pstrcat(pool, dir, "/handlers.log", NULL);
    const char *release = apr_pstrcat(pool, dir, "/release", NULL);
    const char *script = apr_pstrcat(pool, dir, "/handler.sh", NULL);
    const char *body = apr_psprintf(
        pool, "#!/bin/sh\necho \"start $1\" >> %s\n"
              "if [ \"$1\" = B ]; then\n"
              "  while [ ! -e %s ]; do sleep 0.01; done\nfi\n"
              "echo \"end $1\" >> %s\n", log, release, log);
    const char *argv_a[] = {script, "A", NULL}, *argv_b[] = {script, "B",
                                                              NULL};
    const char *argv_c[] = {script, "C", NULL};
    hf_logger_t quiet_log = {quiet, NULL, NULL};
    dispatcher_t d;
    apr_thread_t *thread;
    apr_status_t rv;
    apr_time_t now = apr_time_now();
    const char *text, *start_a, *end_b;

    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(hf_spool_write(script, body, strlen(body), 0), 0);
    ck_assert_int_eq(chmod(script, 0755), 0);
    memset(&d, 0, sizeof d);
    d.spec.dir = dir;
    d.spec.concurrency = 3;
    d.spec.retry = 0;
    d.spec.retry_delay = 1;
    d.spec.log = &quiet_log;
    d.spec.stop = &d.stop;
    d.spec.wake_fd = -1;
    put_event(dir, now + 10, "profile:k", argv_b, 2);
    ck_assert_int_eq(apr_thread_create(&thread, NULL, dispatch, &d, pool),
                     APR_SUCCESS);
    wait_for(log, "start B");
    put_event(dir, now, "profile:k", argv_a, 1);
    put_event(dir, now + 20, "profile:other", argv_c, 3);
    wait_for(log, "end C");
    ck_assert_int_eq(hf_spool_write(release, "", 0, 0), 0);
    wait_for(log, "end A");
    d.stop = 1;
    apr_thread_join(&rv, thread);
    text = read_log(log);
    start_a = strstr(text, "start A");
    end_b = strstr(text, "end B");
    ck_assert_ptr_nonnull(end_b);
    ck_assert_msg(start_a > end_b, "A ran beside B: %s", text);
    remove_tree(dir);
}
END_TEST

static Suite *dispatch_suite(void)
{
    Suite *s = suite_create("dispatch");
    TCase *tc = unit_case(s, "order");

    tcase_set_timeout(tc, 0);   /* waits for handlers: no clock in a test */

    tcase_add_test(tc, late_arrival_waits_for_the_running_event_of_its_key);
    return s;
}

UNIT_MAIN(dispatch_suite)
