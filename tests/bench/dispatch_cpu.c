/*
 * dispatch_cpu.c - the two halves of tests/bench/dispatch_cpu.py:
 *
 *   dispatch_cpu fill DIR COUNT one|distinct
 *       prepares the spool DIR and writes COUNT events into new/, as the
 *       receivers write them (hf_spool_event_name, hf_spool_envelope_encode),
 *       all on one order key or each on its own; the handler is /bin/true
 *   dispatch_cpu run DIR CONCURRENCY
 *       runs the spool's dispatcher (hf_dispatch_run, as Apache's child
 *       does) until SIGTERM; errors go to standard error
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "hrflow.h"

static const char *const argv_true[] = {"/bin/true", NULL};
static atomic_int stop;
static int stop_pipe[2] = {-1, -1};

static void to_stderr(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level <= HF_LOG_WARNING)
        fprintf(stderr, "%s\n", msg);
}

static int wants(void *ctx, int level)
{
    (void)ctx;
    return level <= HF_LOG_WARNING;
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
    if (write(stop_pipe[1], "", 1) < 0) {
        /* the dispatcher looks at stop at its next pass anyway */
    }
}

static int write_event(const char *path, const char *text, apr_size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd < 0)
        return -1;
    if (hf_spool_write_all(fd, text, len) != 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

static int fill(apr_pool_t *pool, const char *dir, long count, int one_key)
{
    const char *err = hf_spool_prepare(pool, dir, -1, -1);
    apr_time_t now = apr_time_now();
    long i;

    if (err) {
        fprintf(stderr, "dispatch_cpu: %s\n", err);
        return 1;
    }
    for (i = 0; i < count; i++) {
        apr_pool_t *p;
        hf_envelope_t e;
        const char *name, *key;
        char *text;
        apr_size_t len;

        apr_pool_create(&p, pool);
        memset(&e, 0, sizeof e);
        key = one_key ? "k" : apr_psprintf(p, "k%ld", i);
        /* 32 hex digits, as hf_event makes them (a name's dashes
         * separate its fields). */
        e.delivery_id = apr_psprintf(p, "%032lx", (unsigned long)i);
        e.event_id = "0000000000000000000000000000000000000000000000000000"
                     "000000000000";
        e.type = "profile.parsing.success";
        e.order_key = apr_pstrcat(p, "profile:", key, NULL);
        e.received = now + i;       /* arrival order: name order */
        e.count = 1;
        e.verified = 1;
        e.timeout = 30;
        e.argv = argv_true;
        e.text = apr_psprintf(p, "{\"type\":\"profile.parsing.success\","
                              "\"profile\":{\"key\":\"%s\"}}", key);
        e.len = strlen(e.text);
        name = hf_spool_event_name(p, e.received, 0, e.delivery_id,
                                   e.order_key);
        text = hf_spool_envelope_encode(p, &e, &len);
        /* Not synced one by one as a receiver does: nothing runs yet,
         * and a hundred thousand syncs would take minutes. */
        if (write_event(hf_spool_path(p, dir, "new", name), text, len) != 0) {
            perror("dispatch_cpu: cannot write an event");
            return 1;
        }
        apr_pool_destroy(p);
    }
    return 0;
}

static int run(apr_pool_t *p, const char *dir, int concurrency)
{
    hf_logger_t log = {to_stderr, NULL, wants};
    hf_dispatch_spec_t spec;
    struct sigaction sa;

    if (pipe(stop_pipe) != 0)
        return 1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* as in Apache's dispatcher: a handler that does not read its input */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    memset(&spec, 0, sizeof spec);
    spec.dir = dir;
    spec.concurrency = concurrency;
    spec.retry = 0;
    spec.retry_delay = 1;
    spec.log = &log;
    spec.stop = &stop;
    spec.wake_fd = stop_pipe[0];
    return hf_dispatch_run(p, &spec) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    apr_pool_t *pool;

    apr_app_initialize(&argc, (const char *const **)&argv, NULL);
    atexit(apr_terminate);
    apr_pool_create(&pool, NULL);
    if (argc == 5 && !strcmp(argv[1], "fill"))
        return fill(pool, argv[2], atol(argv[3]),
                    !strcmp(argv[4], "one"));
    if (argc == 4 && !strcmp(argv[1], "run"))
        return run(pool, argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: dispatch_cpu fill DIR COUNT one|distinct\n"
                    "       dispatch_cpu run DIR CONCURRENCY\n");
    return 2;
}
