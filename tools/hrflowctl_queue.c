/*
 * hrflowctl_queue.c - hrflowctl's commands for the shared queue (fleet
 * mode, HrflowQueue URL): init creates or upgrades the schema; list, show
 * and requeue do what they do for a spool folder.
 *
 *   hrflowctl [--name NAME] [--password-file FILE] init URL
 *   hrflowctl ... list URL | show URL ID | requeue URL ID... | --all
 *
 * ID is the event's number in the queue (the first column of list).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include "hrflowctl.h"
#include "hf_queue.h"

#define LIST_MAX 1000     /* rows shown per state */

static const char *const shown[] = {"queued", "retry", "running", "failed",
                                    NULL};

int hrflowctl_is_url(const char *arg)
{
    return !strncmp(arg, "postgresql://", 13) || !strncmp(arg, "postgres://", 11);
}

static int fail(apr_pool_t *p, const char *err)
{
    fprintf(stderr, "hrflowctl: %s\n", hf_log_escape(p, err));
    return 1;
}

/* Anyone's bytes (handler output, event text) shown without control
 * characters reaching the terminal raw; lines kept. */
static void print_text(const char *label, const char *text, apr_size_t len)
{
    char out[HF_ESCAPED_MAX];
    apr_size_t i;

    printf("%s", label);
    for (i = 0; i < len; i++)
        fwrite(out, 1, (size_t)hf_log_escape_byte((unsigned char)text[i], 1,
                                                  out), stdout);
    if (len && text[len - 1] != '\n')
        putchar('\n');
}

static void print_row(apr_pool_t *p, const hf_queue_row_t *r)
{
    apr_time_t now = apr_time_now();

    printf("  %" APR_INT64_T_FMT "  %s  %s  tries %d", r->id,
           hf_log_escape(p, r->env.delivery_id ? r->env.delivery_id : "?"),
           hf_log_escape(p, r->env.type ? r->env.type : "?"), r->attempt);
    if (r->env.order_key)
        printf("  key %s", hf_log_escape(p, r->env.order_key));
    if (!strcmp(r->state, "retry") && r->due > now)
        printf("  next in %" APR_TIME_T_FMT " s",
               apr_time_sec(r->due - now) + 1);
    if (r->worker)
        printf("  on %s", hf_log_escape(p, r->worker));
    if (r->last_result)
        printf("  last: %s", hf_log_escape(p, r->last_result));
    putchar('\n');
}

static int list(apr_pool_t *p, hf_queue_t *q)
{
    hf_queue_counts_t c;
    const char *err = hf_queue_counts(p, q, &c);
    apr_int64_t counts[4];
    int i, j;

    if (err)
        return fail(p, err);
    counts[0] = c.queued;
    counts[1] = c.retry;
    counts[2] = c.running;
    counts[3] = c.failed;
    for (i = 0; shown[i]; i++) {
        apr_array_header_t *rows = apr_array_make(p, 16, sizeof(void *));
        if ((err = hf_queue_list(p, q, shown[i], LIST_MAX, rows)))
            return fail(p, err);
        printf("%s: %" APR_INT64_T_FMT "\n", shown[i], counts[i]);
        for (j = 0; j < rows->nelts; j++)
            print_row(p, APR_ARRAY_IDX(rows, j, hf_queue_row_t *));
        if (counts[i] > rows->nelts)
            printf("  ... and %" APR_INT64_T_FMT " more\n",
                   counts[i] - rows->nelts);
    }
    printf("done (kept a while): %" APR_INT64_T_FMT "\n", c.done);
    return 0;
}

static int parse_id(const char *s, apr_int64_t *id)
{
    char *end;

    errno = 0;
    *id = apr_strtoi64(s, &end, 10);
    return errno == 0 && *s && !*end && *id > 0;
}

static int show(apr_pool_t *p, hf_queue_t *q, const char *arg)
{
    hf_queue_row_t r;
    apr_int64_t id;
    const char *err;
    int found, i;

    if (!parse_id(arg, &id))
        return fail(p, apr_psprintf(p, "%s is not an event number", arg));
    if ((err = hf_queue_show(p, q, id, &r, &found)))
        return fail(p, err);
    if (!found)
        return fail(p, apr_psprintf(p, "no event %s in the queue", arg));
    printf("id: %" APR_INT64_T_FMT "\nstate: %s\ntries: %d\n", r.id, r.state,
           r.attempt);
    printf("delivery: %s\ntype: %s\n",
           hf_log_escape(p, r.env.delivery_id ? r.env.delivery_id : "?"),
           hf_log_escape(p, r.env.type ? r.env.type : "?"));
    if (r.env.order_key)
        printf("key: %s\n", hf_log_escape(p, r.env.order_key));
    if (r.env.argv) {
        printf("handler:");
        for (i = 0; r.env.argv[i]; i++)
            printf(" %s", hf_log_escape(p, r.env.argv[i]));
        putchar('\n');
    }
    if (r.worker)
        printf("worker: %s\n", hf_log_escape(p, r.worker));
    if (r.env.text)
        print_text("event: ", r.env.text, r.env.len);
    if (r.last_result)
        printf("last status: %s\n", hf_log_escape(p, r.last_result));
    if (r.output)
        print_text("last output:\n", r.output, strlen(r.output));
    return 0;
}

static int requeue_one(apr_pool_t *p, hf_queue_t *q, apr_int64_t id)
{
    apr_int64_t moved;
    const char *err = hf_queue_requeue_id(p, q, id, &moved);

    if (err)
        return fail(p, err);
    if (!moved)
        return fail(p, apr_psprintf(p, "no failed event %" APR_INT64_T_FMT
                                       " in the queue", id));
    printf("requeued %" APR_INT64_T_FMT " as %" APR_INT64_T_FMT "\n", id,
           moved);
    return 0;
}

static int requeue(apr_pool_t *p, hf_queue_t *q, int argc,
                   const char *const *ids)
{
    int i, rc = 0;

    if (argc == 1 && !strcmp(ids[0], "--all")) {
        apr_array_header_t *rows = apr_array_make(p, 16, sizeof(void *));
        const char *err;
        do {
            rows->nelts = 0;
            if ((err = hf_queue_list(p, q, "failed", LIST_MAX, rows)))
                return fail(p, err);
            for (i = 0; i < rows->nelts; i++)
                rc |= requeue_one(p, q,
                                  APR_ARRAY_IDX(rows, i, hf_queue_row_t *)->id);
        } while (rows->nelts == LIST_MAX && !rc);
        return rc;
    }
    for (i = 0; i < argc; i++) {
        apr_int64_t id;
        if (!parse_id(ids[i], &id))
            rc |= fail(p, apr_psprintf(p, "%s is not an event number", ids[i]));
        else
            rc |= requeue_one(p, q, id);
    }
    return rc;
}

/* The password file's first line, as the module reads
 * HrflowQueuePasswordFile. */
static const char *read_password(apr_pool_t *p, const char *path,
                                 const char **password)
{
    char *text;
    apr_size_t len;
    const char *err = hf_spool_read_file(p, path, &text, &len);

    if (err)
        return err;
    text[strcspn(text, "\r\n")] = '\0';
    *password = text;
    return NULL;
}

int hrflowctl_queue(apr_pool_t *p, const hrflowctl_opts_t *o,
                    const char *cmd, const char *url, int argc,
                    const char *const *args)
{
    hf_queue_spec_t spec = {url, NULL,
                            o->name ? o->name : HF_DEFAULT_QUEUE_NAME,
                            HF_DEFAULT_QUEUE_TIMEOUT_MS,
                            "hrflowctl"};
    hf_queue_t *q;
    const char *err;
    int rc, from;

    if (o->password_file && (err = read_password(p, o->password_file,
                                                 &spec.password)))
        return fail(p, err);
    err = hf_queue_open(p, &spec, &q);
    if (!strcmp(cmd, "init") && argc == 0) {
        if (!hf_queue_ok(q))
            return fail(p, err);
        if ((err = hf_queue_init(p, q, &from)))
            return fail(p, err);
        if (from == HF_QUEUE_SCHEMA_VERSION)
            printf("the queue %s is at version %d already\n", spec.name,
                   from);
        else if (from)
            printf("upgraded the queue %s from version %d to %d\n", spec.name,
                   from, HF_QUEUE_SCHEMA_VERSION);
        else
            printf("created the queue %s (version %d)\n", spec.name,
                   HF_QUEUE_SCHEMA_VERSION);
        rc = 0;
    }
    else if (err)
        rc = fail(p, err);
    else if (!strcmp(cmd, "list") && argc == 0)
        rc = list(p, q);
    else if (!strcmp(cmd, "show") && argc == 1)
        rc = show(p, q, args[0]);
    else if (!strcmp(cmd, "requeue") && argc >= 1)
        rc = requeue(p, q, argc, args);
    else
        rc = 2;
    hf_queue_close(q);
    return rc;
}
