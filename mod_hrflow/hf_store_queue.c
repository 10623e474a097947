/*
 * hf_store_queue.c - the PostgreSQL queue as a store of the shared
 * scheduler (hf_sched.h): what the worker claims it runs, and it records
 * each outcome under the claim's fencing token.
 *
 * The database keeps the fleet-wide rules (hf_queue.h): only a key's head
 * is ever claimed, so the events handed to the scheduler have distinct
 * keys, and a retry goes back to the database, to be claimed again when
 * it is due (retries_stay 0).  Claims take at most the workers that would
 * be idle, so that a lease starts when its handler is about to.
 *
 * Connections: one per scheduler slot (slot 0 the main thread: claims,
 * notifications, purge; slots 1..N the worker threads: outcomes), each
 * used by one thread only.  A lost database is reconnected with backoff.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <apr_hash.h>
#include <apr_network_io.h>
#include <apr_strings.h>
#include "hf_queue.h"
#include "hf_sched.h"
#include "hf_store_queue.h"

#define POLL_SEC 1            /* due retries and expired leases of others:
                                 no notification tells of them */
#define PURGE_EVERY_SEC 60
#define DONE_KEEP_SEC 600     /* as the spool keeps done/ */
#define BACKOFF_MAX_SEC 30

typedef struct {
    apr_pool_t *pool;
    hf_queue_claim_t claim;
    int settled;                    /* its outcome recorded, or fenced */
} qevent_t;

struct hf_store_queue_t {
    apr_pool_t *pool;
    const hf_worker_spec_t *spec;
    const hf_logger_t *log;
    const char *label;              /* host:pid, recorded with each claim */
    const char **programs;          /* NULL-terminated, each once */
    char *missing;                  /* per program: found unrunnable */
    apr_hash_t *argv_of;            /* program -> its HrflowHandler argvs
                                       (apr_array_header_t of argv) */
    int nslots;
    hf_queue_t **slots;
    int ready;                      /* slot 0 connected, schema checked */
    const char *last_err;           /* of slot 0, logged once */
    apr_time_t retry_at;
    apr_interval_time_t backoff;
    apr_time_t purge_at;
    int draining;                   /* logged that it drains */
};

static const char *queue_name(const hf_store_queue_t *st)
{
    return st->spec->queue.name ? st->spec->queue.name
                                : HF_DEFAULT_QUEUE_NAME;
}

/* ---- the connection of the main thread --------------------------------- */

static void lost(hf_store_queue_t *st, apr_pool_t *p, const char *err)
{
    apr_time_t now = apr_time_now();

    st->ready = 0;
    st->backoff = st->backoff ? st->backoff * 2 : apr_time_from_sec(1);
    if (st->backoff > apr_time_from_sec(BACKOFF_MAX_SEC))
        st->backoff = apr_time_from_sec(BACKOFF_MAX_SEC);
    st->retry_at = now + st->backoff;
    /* The same reason every few seconds tells nothing new. */
    if (!st->last_err || strcmp(st->last_err, err) != 0) {
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00702) "queue %s: %s; trying again, backing off up "
               "to %d s", queue_name(st), err, BACKOFF_MAX_SEC);
        st->last_err = apr_pstrdup(st->pool, err);
    }
}

/* Connects slot 0 (and opens the others) when it is time; 1 when ready. */
static int ensure_ready(hf_store_queue_t *st, apr_pool_t *p)
{
    const char *err;
    int i;

    if (st->ready && hf_queue_ok(st->slots[0]))
        return 1;
    if (apr_time_now() < st->retry_at)
        return 0;
    if (st->slots[0])
        err = hf_queue_reset(p, st->slots[0]);
    else
        err = hf_queue_open(st->pool, &st->spec->queue, &st->slots[0]);
    if (err) {
        lost(st, p, err);
        return 0;
    }
    /* The workers' connections: opened here, by the thread that owns the
     * pool; a worker reconnects its own when it breaks. */
    for (i = 1; i < st->nslots; i++)
        if (!st->slots[i])
            hf_queue_open(st->pool, &st->spec->queue, &st->slots[i]);
    /* Back once a claim works too (connected is not enough: a standby
     * takes connections and refuses claims). */
    st->ready = 1;
    return 1;
}

/* A claim worked: the trouble, if any, is over. */
static void recovered(hf_store_queue_t *st, apr_pool_t *p)
{
    if (st->last_err)
        hf_log(st->log, HF_LOG_NOTICE, p,
               HFLOGNO(00703) "queue %s: connected again", queue_name(st));
    st->last_err = NULL;
    st->backoff = 0;
}

/* ---- the store ---------------------------------------------------------- */

static int store_open(void *ctx, hf_sched_t *s, apr_pool_t *p)
{
    hf_store_queue_t *st = ctx;

    ensure_ready(st, p);         /* a database down at start is waited for */
    return 0;
}

static int store_fd(void *ctx)
{
    hf_store_queue_t *st = ctx;
    apr_pool_t *p;
    int fd;

    if (!st->ready)
        return -1;
    apr_pool_create(&p, st->pool);
    fd = hf_queue_fd(p, st->slots[0]);
    apr_pool_destroy(p);
    return fd;
}

/* A claimed event in a pool of its own, released on its own. */
static qevent_t *keep_claim(hf_store_queue_t *st, const hf_queue_claim_t *c)
{
    apr_pool_t *ep;
    qevent_t *ev;
    hf_envelope_t *e;
    int n = 0, i;

    apr_pool_create(&ep, st->pool);
    ev = apr_pcalloc(ep, sizeof *ev);
    ev->pool = ep;
    ev->claim = *c;
    e = &ev->claim.env;
#define COPY(f) e->f = e->f ? apr_pstrdup(ep, e->f) : NULL
    COPY(name);
    COPY(delivery_id);
    COPY(event_id);
    COPY(type);
    COPY(order_key);
    COPY(last_result);
#undef COPY
    e->text = apr_pstrmemdup(ep, c->env.text, c->env.len);
    while (c->env.argv[n])
        n++;
    e->argv = apr_pcalloc(ep, (n + 1) * sizeof *e->argv);
    for (i = 0; i < n; i++)
        ((const char **)e->argv)[i] = apr_pstrdup(ep, c->env.argv[i]);
    return ev;
}

/* The programs this worker can start now.  One removed or made
 * unrunnable since the start (a deploy under way on this host) is not
 * claimed for: its events wait for a worker that has it, or for its
 * return, rather than spend their tries here failing to start. */
static const char *const *runnable(hf_store_queue_t *st, apr_pool_t *p)
{
    const char **out;
    int n = 0, i, k = 0;

    while (st->programs[n])
        n++;
    out = apr_pcalloc(p, (n + 1) * sizeof *out);
    for (i = 0; i < n; i++) {
        int ok = access(st->programs[i], X_OK) == 0;
        if (ok)
            out[k++] = st->programs[i];
        if (!ok && !st->missing[i])
            hf_log(st->log, HF_LOG_WARNING, p,
                   HFLOGNO(00715) "queue %s: cannot run %s: %s; its events "
                   "are left to other workers until it is back",
                   queue_name(st), hf_log_escape(p, st->programs[i]),
                   strerror(errno));
        else if (ok && st->missing[i])
            hf_log(st->log, HF_LOG_NOTICE, p,
                   HFLOGNO(00716) "queue %s: %s is back: claiming its "
                   "events again", queue_name(st),
                   hf_log_escape(p, st->programs[i]));
        st->missing[i] = !ok;
    }
    return out;
}

static void claim_some(hf_store_queue_t *st, hf_sched_t *s, int want,
                       apr_pool_t *p)
{
    apr_array_header_t *claims = apr_array_make(p, want, sizeof(void *));
    const char *const *programs = runnable(st, p);
    const char *err;
    int i;

    if (!programs[0])
        return;
    err = hf_queue_claim(p, st->slots[0], st->label, programs, want, claims);

    if (err) {
        /* Broken, or refused (a standby, a database made read-only):
         * either way the claim fails again at once, so it is said once
         * and tried again with backoff, on a new connection that may
         * find the writable host (target_session_attrs=read-write). */
        lost(st, p, err);
        return;
    }
    recovered(st, p);
    for (i = 0; i < claims->nelts; i++) {
        qevent_t *ev = keep_claim(st, APR_ARRAY_IDX(claims, i,
                                                    hf_queue_claim_t *));
        /* Out of memory: its lease runs out and it is claimed again. */
        if (hf_sched_add(s, ev->claim.env.order_key, NULL, 0, ev) != 0)
            apr_pool_destroy(ev->pool);
    }
}

static void purge(hf_store_queue_t *st, apr_pool_t *p)
{
    apr_time_t now = apr_time_now();
    const char *err;
    int n;

    if (now < st->purge_at)
        return;
    st->purge_at = now + apr_time_from_sec(PURGE_EVERY_SEC);
    if ((err = hf_queue_purge(p, st->slots[0], DONE_KEEP_SEC, &n)))
        hf_log(st->log, HF_LOG_WARNING, p,
               HFLOGNO(00711) "queue %s: %s", queue_name(st), err);
}

static apr_time_t store_poll(void *ctx, hf_sched_t *s, int want,
                             apr_pool_t *p)
{
    hf_store_queue_t *st = ctx;
    apr_time_t later = apr_time_now() + apr_time_from_sec(POLL_SEC);

    if (st->spec->drain && atomic_load(st->spec->drain)) {
        /* Claim nothing more; stop once what runs is recorded. */
        if (!st->draining) {
            st->draining = 1;
            hf_log(st->log, HF_LOG_NOTICE, p,
                   HFLOGNO(00710) "queue %s: stopping: no more claims; %d "
                   "event(s) to finish", queue_name(st), hf_sched_count(s));
        }
        if (hf_sched_count(s) == 0)
            atomic_store(st->spec->stop, 1);
        return apr_time_now() + apr_time_from_msec(200);
    }
    if (!ensure_ready(st, p))
        return st->retry_at;
    if (hf_queue_notified(st->slots[0]) < 0) {
        lost(st, p, "the connection to the queue broke");
        return st->retry_at;
    }
    if (want > 0)
        claim_some(st, s, want, p);
    if (st->ready)
        purge(st, p);
    return st->ready ? later : st->retry_at;
}

static int same_argv(const char *const *a, const char *const *b)
{
    while (*a && *b && !strcmp(*a, *b))
        a++, b++;
    return !*a && !*b;
}

/* Of this worker's HrflowHandler lines for the event's program, the one
 * with the event's arguments (one program may serve several endpoints,
 * each with its own), else the first; NULL when it has none. */
static const char *const *our_argv(const hf_store_queue_t *st,
                                   const char *const *wanted)
{
    const apr_array_header_t *lines = apr_hash_get(st->argv_of, wanted[0],
                                                   APR_HASH_KEY_STRING);
    int i;

    if (!lines)
        return NULL;
    for (i = 0; i < lines->nelts; i++)
        if (same_argv(APR_ARRAY_IDX(lines, i, const char *const *), wanted))
            return APR_ARRAY_IDX(lines, i, const char *const *);
    return APR_ARRAY_IDX(lines, 0, const char *const *);
}

static int store_begin(void *ctx, void *data, int slot, apr_pool_t *p,
                       hf_sched_job_t *job, const char **error)
{
    hf_store_queue_t *st = ctx;
    qevent_t *ev = data;
    const char *const *argv = our_argv(st, ev->claim.env.argv);

    job->env = ev->claim.env;
    job->label = apr_psprintf(p, "queue %s: event %" APR_INT64_T_FMT,
                              queue_name(st), ev->claim.id);
    if (!argv) {
        /* The claim asked for our programs only: never happens. */
        *error = apr_psprintf(p, "%s is none of this worker's handlers",
                              hf_log_escape(p, ev->claim.env.argv[0]));
        return HF_SCHED_BAD;
    }
    /* Our own HrflowHandler line for that program, never the row's: write
     * access to the table is not the power to run anything else. */
    job->env.argv = argv;
    return HF_SCHED_OK;
}

/* Records o on q (reconnected first when broken). */
static const char *record_once(apr_pool_t *p, hf_queue_t *q,
                               const hf_queue_claim_t *c,
                               const hf_sched_outcome_t *o, int *fenced)
{
    const char *err = hf_queue_ok(q) ? NULL : hf_queue_reset(p, q);

    if (err)
        return err;
    switch (o->verdict) {
    case HF_SCHED_DONE:
        return hf_queue_done(p, q, c, fenced);
    case HF_SCHED_RETRY:
        return hf_queue_retry(p, q, c, o->due, o->status, fenced);
    default:
        return hf_queue_fail(p, q, c, o->status, o->output, o->output_len,
                             fenced);
    }
}

static int store_record(void *ctx, void *data, int slot,
                        const hf_sched_outcome_t *o, apr_pool_t *p)
{
    hf_store_queue_t *st = ctx;
    qevent_t *ev = data;
    hf_queue_t *q = slot < st->nslots ? st->slots[slot] : NULL;
    const char *err = NULL;
    int fenced = 0;

    if (!q)
        return HF_SCHED_LATER;
    err = record_once(p, q, &ev->claim, o, &fenced);
    /* A connection that broke while idle (a database restarted) shows it
     * only now: once more on a new one. */
    if (err && !hf_queue_ok(q))
        err = record_once(p, q, &ev->claim, o, &fenced);
    if (err) {
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00705) "queue %s: event %" APR_INT64_T_FMT ": %s; "
               "trying again later", queue_name(st), ev->claim.id, err);
        return HF_SCHED_LATER;
    }
    if (fenced) {
        hf_log(st->log, HF_LOG_WARNING, p,
               HFLOGNO(00704) "queue %s: event %" APR_INT64_T_FMT ": late "
               "result discarded (%s, try %d): its lease had passed and "
               "another claim holds it", queue_name(st), ev->claim.id,
               o->verdict == HF_SCHED_DONE ? "succeeded"
               : o->status ? hf_log_escape(p, o->status) : "failed",
               ev->claim.env.attempt);
        ev->settled = 1;
        return HF_SCHED_GONE;
    }
    ev->settled = 1;
    if (o->verdict == HF_SCHED_FAILED)
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00708) "queue %s: %s: %s; hrflowctl show shows its "
               "output", queue_name(st),
               o->what ? o->what : apr_psprintf(p, "event %" APR_INT64_T_FMT
                                                   " failed", ev->claim.id),
               o->status ? hf_log_escape(p, o->status) : "failed");
    return HF_SCHED_OK;
}

/* An event forgotten without an outcome (its try cut short by the stop,
 * or its outcome never stored): its claim is handed back, so that it runs
 * again at once rather than when the lease would have passed, its key
 * held until then.  Best effort: the lease covers a failure. */
static void store_release(void *ctx, void *data)
{
    hf_store_queue_t *st = ctx;
    qevent_t *ev = data;

    if (!ev->settled && st->nslots > 0 && st->slots[0]
        && hf_queue_ok(st->slots[0])) {
        const char *err = hf_queue_release(ev->pool, st->slots[0],
                                           &ev->claim);
        if (err)
            hf_log(st->log, HF_LOG_WARNING, ev->pool,
                   HFLOGNO(00717) "queue %s: event %" APR_INT64_T_FMT
                   ": %s; it runs again when its lease passes",
                   queue_name(st), ev->claim.id, err);
    }
    apr_pool_destroy(ev->pool);
}

static void store_close(void *ctx, apr_pool_t *p)
{
    hf_store_queue_t *st = ctx;
    int i;

    for (i = 0; i < st->nslots; i++)
        if (st->slots[i]) {
            hf_queue_close(st->slots[i]);
            st->slots[i] = NULL;
        }
}

const hf_store_t hf_store_queue = {
    "queue", 0, store_open, store_fd, store_poll, store_begin,
    store_record, store_release, store_close,
};

hf_store_queue_t *hf_store_queue_create(apr_pool_t *p,
                                        const hf_worker_spec_t *spec)
{
    hf_store_queue_t *st = apr_pcalloc(p, sizeof *st);
    apr_array_header_t *programs = apr_array_make(p, 4, sizeof(char *));
    char host[APRMAXHOSTLEN + 1];
    int i;

    st->pool = p;
    st->spec = spec;
    st->log = spec->log;
    if (apr_gethostname(host, sizeof host, p) != APR_SUCCESS)
        apr_cpystrn(host, "localhost", sizeof host);
    st->label = apr_psprintf(p, "%s:%ld", host, (long)getpid());
    st->argv_of = apr_hash_make(p);
    for (i = 0; spec->handlers && i < spec->handlers->nelts; i++) {
        const hf_handler_t *h = &APR_ARRAY_IDX(spec->handlers, i,
                                               hf_handler_t);
        apr_array_header_t *lines = apr_hash_get(st->argv_of, h->argv[0],
                                                 APR_HASH_KEY_STRING);
        if (!lines) {
            lines = apr_array_make(p, 1, sizeof(const char *const *));
            apr_hash_set(st->argv_of, h->argv[0], APR_HASH_KEY_STRING, lines);
            APR_ARRAY_PUSH(programs, const char *) = h->argv[0];
        }
        APR_ARRAY_PUSH(lines, const char *const *) = h->argv;
    }
    APR_ARRAY_PUSH(programs, const char *) = NULL;
    st->programs = (const char **)programs->elts;
    st->missing = apr_pcalloc(p, (apr_size_t)programs->nelts);
    st->nslots = (spec->concurrency > 0 ? spec->concurrency
                                        : HF_DEFAULT_CONCURRENCY) + 1;
    st->slots = apr_pcalloc(p, st->nslots * sizeof *st->slots);
    return st;
}

const char *hf_store_queue_label(const hf_store_queue_t *st)
{
    return st->label;
}

int hf_store_queue_programs(const hf_store_queue_t *st)
{
    int n = 0;

    while (st->programs[n])
        n++;
    return n;
}
