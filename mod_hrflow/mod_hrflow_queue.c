/*
 * mod_hrflow_queue.c - fleet mode in Apache (SPEC 8): the shared PostgreSQL
 * queue seen from a receiver.
 *
 * - Direct mode (HrflowQueue without HrflowSpool): a request commits its
 *   routed events to the queue before the 202.  Each server process has one
 *   connection per queue, opened from child_init (after the privilege drop,
 *   by a thread, the first requests waiting for it within their timeout),
 *   and the concurrent requests of the process share its statements as
 *   hf_commit.c's share their syncs: the first to find the connection idle
 *   becomes the leader and commits everything queued so far in one
 *   statement; the others wait for its word.  HrflowQueueTimeout bounds a
 *   request's wait, connecting included: past it the answer is 503
 *   queue_unavailable, and HrFlow sends the event again.
 * - A lost connection is opened again by the next leader, with backoff
 *   (0.25 s doubling to 5 s) between failed tries; meanwhile requests are
 *   refused at once rather than each waiting out its timeout.
 * - HrflowWorker on: a worker process per queue (hf_worker_run), started,
 *   restarted and stopped as the spool's dispatcher is (hrflow_helper_t),
 *   allowed to run the handlers of the endpoints that use the queue.
 * - SetHandler hrflow-health: whether this server can accept events now.
 * - mod_status: the queue's counts, refreshed at most every
 *   HRFLOW_STATUS_TTL per process, never one query per status page.
 *
 * The password (HrflowQueuePasswordFile) is read by root at startup and
 * kept in memory; it is never logged, and URLs are logged without theirs
 * (hf_queue_url_redact).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_status.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include "mod_hrflow.h"
#include "hf_queue.h"

APLOG_USE_MODULE(hrflow);

#define HRFLOW_HEALTH_HANDLER "hrflow-health"
#define HRFLOW_STATUS_TTL apr_time_from_sec(5)
#define HRFLOW_HEALTH_TTL apr_time_from_sec(2)
#define HRFLOW_BACKOFF_FIRST apr_time_from_msec(250)
#define HRFLOW_BACKOFF_MAX apr_time_from_sec(5)
#define HRFLOW_PASSWORD_MAX 1024

/* Requests of one process waiting for one commit (see commit()). */
typedef struct group_t {
    struct group_t *next;
    const hf_envelope_t **envs;
    int n;
    apr_time_t deadline;
    int taken;                   /* in the leader's statement */
    int done;
    const char *err;             /* in the leader's pool: copied at once */
    char why[256];
} group_t;

typedef struct {
    hf_queue_spec_t spec;        /* URL, password, name, timeout */
    const char *label;           /* "queue NAME at URL" without password */
    server_rec *server;
    int direct;                  /* a server commits here itself */
    int worker;                  /* HrflowWorker */
    apr_array_header_t *handlers;  /* hf_handler_t of its endpoints */
    int concurrency, retry, retry_delay;
    hrflow_helper_t helper;
    /* Per server process, from child_init on. */
    apr_pool_t *conn_pool;       /* the connection's, used under busy */
    hf_queue_t *q;
    int ready;                   /* the last open or reset worked */
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *turn;
    group_t *pending, **pending_tail;
    int busy;                    /* a thread is using the connection */
    apr_time_t retry_at;         /* no new connection before */
    apr_interval_time_t backoff;
    char down[256];              /* why it is down, or "" */
    apr_time_t last_ok;          /* of the last round trip that worked */
    apr_uint64_t groups, events;
    hf_queue_counts_t counts;
    apr_time_t counted;          /* 0: never */
    char count_err[256];
} queue_rec;

static apr_array_header_t *queues;   /* queue_rec *, this generation's */
static apr_hash_t *by_server;        /* server_rec * -> queue_rec * */

/* ---- startup ------------------------------------------------------------ */

static int queue_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp)
{
    queues = apr_array_make(pconf, 2, sizeof(queue_rec *));
    by_server = apr_hash_make(pconf);
    return OK;
}

/* The password file's first line, read now (as root): NULL or why not. */
static const char *read_password(apr_pool_t *pconf, apr_pool_t *ptemp,
                                 const char *path, const char **password)
{
    char *text = NULL;
    apr_size_t len = 0, n;
    const char *err = hf_config_read_secret_file(ptemp, path, &text, &len);

    if (err)
        return apr_pstrcat(ptemp, "HrflowQueuePasswordFile: ", err, NULL);
    n = strcspn(text, "\r\n");
    if (n > HRFLOW_PASSWORD_MAX)
        err = apr_psprintf(ptemp, "HrflowQueuePasswordFile: %s: the "
                           "password is longer than %d bytes", path,
                           HRFLOW_PASSWORD_MAX);
    else if (n == 0 || memchr(text, '\0', n))
        err = apr_psprintf(ptemp, "HrflowQueuePasswordFile: %s holds no "
                           "password on its first line", path);
    else
        *password = apr_pstrmemdup(pconf, text, n);
    free(memset(text, 0, len + 2));
    return err;
}

static queue_rec *find_queue(const char *url, const char *name)
{
    int i;

    for (i = 0; queues && i < queues->nelts; i++) {
        queue_rec *qr = APR_ARRAY_IDX(queues, i, queue_rec *);
        if (!strcmp(qr->spec.url, url) && !strcmp(qr->spec.name, name))
            return qr;
    }
    return NULL;
}

static queue_rec *add_queue(apr_pool_t *pconf, server_rec *s,
                            const hf_config_t *c, const char *password)
{
    queue_rec *qr = apr_pcalloc(pconf, sizeof *qr);

    qr->spec.url = c->queue;
    qr->spec.password = password;
    qr->spec.name = hf_config_queue_name(c);
    qr->spec.timeout_ms = hf_config_queue_timeout_ms(c);
    qr->spec.app = "hrflow-receiver";
    qr->label = apr_psprintf(pconf, "queue %s at %s", qr->spec.name,
                             hf_queue_url_redact(pconf, c->queue));
    qr->server = s;
    qr->worker = hf_config_worker(c);
    qr->handlers = apr_array_make(pconf, 4, sizeof(hf_handler_t));
    qr->concurrency = hf_config_concurrency(c);
    qr->retry = hf_config_retry(c);
    qr->retry_delay = hf_config_retry_delay(c);
    APR_ARRAY_PUSH(queues, queue_rec *) = qr;
    return qr;
}

/* What two servers using one queue set differently, or NULL (the
 * password is not shown). */
static const char *differs(apr_pool_t *p, const queue_rec *qr,
                           const hf_config_t *c, const char *password)
{
    if ((password == NULL) != (qr->spec.password == NULL)
        || (password && strcmp(password, qr->spec.password) != 0))
        return "passwords (HrflowQueuePasswordFile)";
    if (hf_config_queue_timeout_ms(c) != qr->spec.timeout_ms)
        return apr_psprintf(p, "HrflowQueueTimeout (%d ms and %d ms)",
                            qr->spec.timeout_ms,
                            hf_config_queue_timeout_ms(c));
    if (hf_config_worker(c) != qr->worker)
        return "HrflowWorker";
    return NULL;
}

int hrflow_queue_check_server(apr_pool_t *pconf, apr_pool_t *ptemp,
                              server_rec *s)
{
    const hf_config_t *c = hrflow_server_config(s);
    const char *password = NULL, *err = NULL;
    queue_rec *qr;

    if (!c->queue)
        return 0;
    if (c->queue_password_file)
        err = read_password(pconf, ptemp, c->queue_password_file, &password);
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     HFLOGNO(00801) "%s", err);
        return -1;
    }
    qr = find_queue(c->queue, hf_config_queue_name(c));
    if (qr && (err = differs(ptemp, qr, c, password)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     HFLOGNO(00806) "%s: %s and %s use it with different "
                     "%s: one queue has one connection per process and "
                     "one worker; give them the same values",
                     qr->label, hrflow_server_name(ptemp, qr->server),
                     hrflow_server_name(ptemp, s),
                     err);
        return -1;
    }
    if (!qr)
        qr = add_queue(pconf, s, c, password);
    if (!c->spool)
        qr->direct = 1;
    apr_hash_set(by_server, apr_pmemdup(pconf, &s, sizeof s), sizeof s, qr);
    return 0;
}

static queue_rec *queue_of(const server_rec *s)
{
    return by_server ? apr_hash_get(by_server, &s, sizeof s) : NULL;
}

const hf_queue_spec_t *hrflow_queue_spec(const server_rec *s)
{
    queue_rec *qr = queue_of(s);

    return qr ? &qr->spec : NULL;
}

void hrflow_queue_note_endpoint(server_rec *s, const hf_config_t *cfg)
{
    queue_rec *qr = queue_of(s);
    int i;

    for (i = 0; qr && cfg->handlers && i < cfg->handlers->nelts; i++)
        APR_ARRAY_PUSH(qr->handlers, hf_handler_t) =
            APR_ARRAY_IDX(cfg->handlers, i, hf_handler_t);
}

/* ---- the worker process ------------------------------------------------ */

static int run_worker(apr_pool_t *p, void *ctx, const hf_logger_t *log,
                      atomic_int *stop, int wake_fd)
{
    const queue_rec *qr = ctx;
    hf_worker_spec_t spec;

    memset(&spec, 0, sizeof spec);
    spec.queue = qr->spec;
    spec.queue.app = "hrflow-worker";
    spec.handlers = qr->handlers;
    spec.concurrency = qr->concurrency;
    spec.retry = qr->retry;
    spec.retry_delay = qr->retry_delay;
    spec.log = log;
    spec.stop = stop;
    spec.wake_fd = wake_fd;
    return hf_worker_run(p, &spec);
}

/* Once per start and restart, not in the dry run. */
static int queue_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                             apr_pool_t *ptemp, server_rec *main_server)
{
    int i;

    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return OK;
    for (i = 0; queues && i < queues->nelts; i++) {
        queue_rec *qr = APR_ARRAY_IDX(queues, i, queue_rec *);
        if (!qr->worker)
            continue;
        if (qr->handlers->nelts == 0) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, qr->server,
                         HFLOGNO(00807) "%s: no endpoint has a handler, so "
                         "no worker is started", qr->label);
            continue;
        }
        qr->helper.what = qr->label;
        qr->helper.role = "worker";
        qr->helper.run = run_worker;
        qr->helper.ctx = qr;
        qr->helper.server = qr->server;
        qr->helper.pool = pconf;
        if (hrflow_helper_start(&qr->helper) != 0)
            return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* ---- the connection of this process ------------------------------------ */

static void note_down(queue_rec *qr, const char *why, int failed_connect)
{
    apr_time_t now = apr_time_now();

    if (!qr->down[0])
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, qr->server,
                     HFLOGNO(00802) "%s: %s; its requests answer 503 "
                     "queue_unavailable until it is back", qr->label, why);
    apr_cpystrn(qr->down, why, sizeof qr->down);
    qr->ready = 0;
    if (failed_connect) {
        qr->backoff = qr->backoff ? qr->backoff * 2 : HRFLOW_BACKOFF_FIRST;
        if (qr->backoff > HRFLOW_BACKOFF_MAX)
            qr->backoff = HRFLOW_BACKOFF_MAX;
        qr->retry_at = now + qr->backoff;
    }
    else {
        qr->retry_at = now;      /* a broken connection: reopen at once */
    }
}

static void note_up(queue_rec *qr)
{
    if (qr->down[0])
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, qr->server,
                     HFLOGNO(00804) "%s: connected again", qr->label);
    qr->down[0] = '\0';
    qr->ready = 1;
    qr->backoff = 0;
    qr->retry_at = 0;
    qr->last_ok = apr_time_now();
}

/* With the connection in hand (busy): opens it when it is down and its
 * next try is due.  NULL, or why there is no connection. */
static const char *connect_if_needed(apr_pool_t *p, queue_rec *qr)
{
    const char *err;

    /* Connected is not enough: the schema was checked, too. */
    if (qr->q && qr->ready && hf_queue_ok(qr->q))
        return NULL;
    if (qr->down[0] && apr_time_now() < qr->retry_at)
        return apr_psprintf(p, "%s (next try in %" APR_TIME_T_FMT " ms)",
                            qr->down,
                            apr_time_as_msec(qr->retry_at - apr_time_now()));
    err = qr->q ? hf_queue_reset(p, qr->q)
                : hf_queue_open(qr->conn_pool, &qr->spec, &qr->q);
    if (err) {
        note_down(qr, err, 1);
        return err;
    }
    note_up(qr);
    return NULL;
}

/* Takes the connection for a thread's own use (status, health), waiting
 * until deadline for the one using it: 0, or -1 when it stayed busy. */
static int take_connection(queue_rec *qr, apr_time_t deadline)
{
    apr_thread_mutex_lock(qr->lock);
    while (qr->busy) {
        apr_time_t now = apr_time_now();
        if (now >= deadline) {
            apr_thread_mutex_unlock(qr->lock);
            return -1;
        }
        apr_thread_cond_timedwait(qr->turn, qr->lock, deadline - now);
    }
    qr->busy = 1;
    apr_thread_mutex_unlock(qr->lock);
    return 0;
}

static void give_connection(queue_rec *qr)
{
    apr_thread_mutex_lock(qr->lock);
    qr->busy = 0;
    apr_thread_cond_broadcast(qr->turn);
    apr_thread_mutex_unlock(qr->lock);
}

/* ---- group commit ------------------------------------------------------ */

/* One statement for the envelopes of all.  A connection found broken (the
 * database restarted since the last one) is opened again and the
 * statement sent once more: whether the first reached a commit is
 * unknown, so the events may be stored twice, as when the sender sends
 * again after a 503. */
static const char *send_all(apr_pool_t *p, queue_rec *qr,
                            const apr_array_header_t *all)
{
    const hf_envelope_t *const *envs = (const void *)all->elts;
    const char *err = hf_queue_accept(p, qr->q, envs, all->nelts);

    if (err && !hf_queue_ok(qr->q)) {
        note_down(qr, err, 0);
        if (!connect_if_needed(p, qr))
            err = hf_queue_accept(p, qr->q, envs, all->nelts);
        if (err && !hf_queue_ok(qr->q))
            note_down(qr, err, 0);
    }
    if (!err)
        qr->last_ok = apr_time_now();
    return err;
}

/* The leader's work, the lock released: one statement for every group it
 * took whose deadline has not passed. */
static void commit_groups(apr_pool_t *p, queue_rec *qr, group_t *groups)
{
    const char *err = connect_if_needed(p, qr);
    apr_array_header_t *all = apr_array_make(p, 8, sizeof(hf_envelope_t *));
    apr_time_t now = apr_time_now();
    group_t *g;
    int i;

    for (g = groups; g; g = g->next) {
        if (!err && now >= g->deadline)
            g->err = "no connection within HrflowQueueTimeout";
        for (i = 0; !err && !g->err && i < g->n; i++)
            APR_ARRAY_PUSH(all, const hf_envelope_t *) = g->envs[i];
    }
    if (!err && all->nelts > 0)
        err = send_all(p, qr, all);
    for (g = groups; g; g = g->next) {
        if (!g->err && err)
            g->err = err;
        if (g->err)
            apr_cpystrn(g->why, g->err, sizeof g->why);
        else
            qr->events += (apr_uint64_t)g->n;
    }
    qr->groups++;
}

/* Drops g from the waiting list (its deadline passed before a leader took
 * it). */
static void unqueue(queue_rec *qr, group_t *g)
{
    group_t **at;

    for (at = &qr->pending; *at; at = &(*at)->next)
        if (*at == g) {
            *at = g->next;
            if (qr->pending_tail == &g->next)
                qr->pending_tail = at;
            return;
        }
}

/* Waits until g is committed: NULL, or why not (in g->why). */
static const char *commit(apr_pool_t *p, queue_rec *qr, group_t *g)
{
    apr_thread_mutex_lock(qr->lock);
    g->next = NULL;
    *qr->pending_tail = g;
    qr->pending_tail = &g->next;
    while (!g->done) {
        apr_time_t now = apr_time_now();
        if (!qr->busy) {
            group_t *groups = qr->pending, *x;
            qr->pending = NULL;
            qr->pending_tail = &qr->pending;
            for (x = groups; x; x = x->next)
                x->taken = 1;
            qr->busy = 1;
            apr_thread_mutex_unlock(qr->lock);
            commit_groups(p, qr, groups);
            apr_thread_mutex_lock(qr->lock);
            for (x = groups; x; x = x->next)
                x->done = 1;
            qr->busy = 0;
            apr_thread_cond_broadcast(qr->turn);
        }
        else if (!g->taken && now >= g->deadline) {
            /* A commit in flight is waited for (its statement has a
             * timeout of its own); one not started yet is given up. */
            unqueue(qr, g);
            g->done = 1;
            apr_cpystrn(g->why, "no commit within HrflowQueueTimeout",
                        sizeof g->why);
            g->err = g->why;
        }
        else {
            apr_thread_cond_timedwait(qr->turn, qr->lock,
                                      g->taken ? apr_time_from_sec(1)
                                               : g->deadline - now);
        }
    }
    apr_thread_mutex_unlock(qr->lock);
    return g->err ? g->why : NULL;
}

static void refuse(hf_outcome_t *out)
{
    out->rc = HF_E_SPOOL;
    out->error = "queue_unavailable";
    out->queued = 0;
}

void hrflow_queue_accept(request_rec *r, const hf_config_t *cfg,
                         hf_outcome_t *out, const hf_logger_t *log)
{
    queue_rec *qr = queue_of(r->server);
    int n = out->events->nelts, i;
    apr_time_t now = apr_time_now();
    const hf_event_t **events = apr_pcalloc(r->pool, n * sizeof *events);
    group_t *g = apr_pcalloc(r->pool, sizeof *g);
    const char *err;

    if (!qr || !qr->lock) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      HFLOGNO(00809) "HrflowQueue is not ready in this "
                      "process");
        return refuse(out);
    }
    g->envs = apr_pcalloc(r->pool, n * sizeof *g->envs);
    for (i = 0; i < n; i++) {
        const hf_event_t *ev = APR_ARRAY_IDX(out->events, i, hf_event_t *);
        const hf_handler_t *h = hf_route_event(r->pool, cfg, ev, out, log);
        hf_envelope_t *e;
        if (!h)
            continue;
        e = apr_palloc(r->pool, sizeof *e);
        hf_commit_envelope(r->pool, cfg, out, ev, h, now, e);
        events[g->n] = ev;
        g->envs[g->n++] = e;
    }
    if (g->n == 0)
        return;
    g->deadline = now + apr_time_from_msec(qr->spec.timeout_ms);
    if ((err = commit(r->pool, qr, g)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      HFLOGNO(00803) "%s: cannot commit %d event%s: %s",
                      qr->label, g->n, g->n == 1 ? "" : "s", err);
        return refuse(out);
    }
    out->queued = g->n;
    for (i = 0; i < g->n; i++)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      HFLOGNO(00805) "event %s type=%s delivery=%s "
                      "result=queued", events[i]->id, events[i]->type,
                      events[i]->delivery_id);
}

/* Opens the connection of a new server process, holding it (busy) so that
 * the first requests wait for it within their own deadlines. */
static void open_connection(queue_rec *qr)
{
    const char *err = hf_queue_open(qr->conn_pool, &qr->spec, &qr->q);

    if (err)
        note_down(qr, err, 1);
    else
        note_up(qr);
    give_connection(qr);
}

static void *APR_THREAD_FUNC opener_main(apr_thread_t *t, void *data)
{
    open_connection(data);
    return NULL;
}

/* Before the process's pools go: an opener still connecting uses them. */
static apr_status_t join_opener(void *data)
{
    apr_status_t rv;

    apr_thread_join(&rv, data);
    return APR_SUCCESS;
}

static void queue_child_init(apr_pool_t *pchild, server_rec *s)
{
    int i;

    for (i = 0; queues && i < queues->nelts; i++) {
        queue_rec *qr = APR_ARRAY_IDX(queues, i, queue_rec *);
        apr_thread_t *opener;
        /* Its own pool, made now: request threads may not make pools
         * of pchild at the same time as others. */
        apr_pool_create(&qr->conn_pool, pchild);
        qr->pending = NULL;
        qr->pending_tail = &qr->pending;
        if (apr_thread_mutex_create(&qr->lock, APR_THREAD_MUTEX_DEFAULT,
                                    pchild) != APR_SUCCESS
            || apr_thread_cond_create(&qr->turn, pchild) != APR_SUCCESS) {
            qr->lock = NULL;
            continue;
        }
        if (!qr->direct)
            continue;            /* store-and-forward: opened when needed */
        /* Connected beside the process's start, not before it: a silent
         * database would keep the whole process from serving (the health
         * check included) for its connect timeout. */
        qr->busy = 1;
        if (apr_thread_create(&opener, NULL, opener_main, qr, pchild)
            == APR_SUCCESS)
            apr_pool_pre_cleanup_register(pchild, opener, join_opener);
        else
            open_connection(qr);
    }
}

/* ---- counts: mod_status and the health check --------------------------- */

/* Refreshes the counts when older than ttl (one query per ttl per
 * process at most).  NULL when the queue answered within ttl, else why
 * not. */
static const char *refresh(apr_pool_t *p, queue_rec *qr, apr_interval_time_t ttl)
{
    apr_time_t now = apr_time_now();
    const char *err;
    hf_queue_counts_t counts;

    if (!qr->lock)
        return "not ready in this process";
    apr_thread_mutex_lock(qr->lock);
    if (qr->counted && now - qr->counted < ttl) {
        err = qr->count_err[0] ? apr_pstrdup(p, qr->count_err) : NULL;
        apr_thread_mutex_unlock(qr->lock);
        return err;
    }
    apr_thread_mutex_unlock(qr->lock);
    if (take_connection(qr, now + apr_time_from_msec(qr->spec.timeout_ms))
        != 0)
        return "the connection stayed busy";
    err = connect_if_needed(p, qr);
    if (!err && (err = hf_queue_counts(p, qr->q, &counts)) == NULL) {
        qr->counts = counts;
        /* Reads work on a read-only database too: it must take commits
         * for the health check to say so. */
        if (!(err = hf_queue_writable(p, qr->q)))
            qr->last_ok = apr_time_now();
    }
    else if (qr->q && !hf_queue_ok(qr->q) && !qr->down[0])
        note_down(qr, err, 0);
    qr->counted = apr_time_now();
    apr_cpystrn(qr->count_err, err ? err : "", sizeof qr->count_err);
    give_connection(qr);
    return err;
}

static int queue_status(request_rec *r, int flags)
{
    static const char *const labels[] = {"Queued", "Retrying", "Running",
                                         "Failed", "Done"};
    int i, j, brief = flags & AP_STATUS_SHORT;

    for (i = 0; queues && i < queues->nelts; i++) {
        queue_rec *qr = APR_ARRAY_IDX(queues, i, queue_rec *);
        const char *err = refresh(r->pool, qr, HRFLOW_STATUS_TTL);
        apr_int64_t n[5];
        n[0] = qr->counts.queued;
        n[1] = qr->counts.retry;
        n[2] = qr->counts.running;
        n[3] = qr->counts.failed;
        n[4] = qr->counts.done;
        if (!brief)
            ap_rprintf(r, "<hr /><h2>mod_hrflow %s</h2>\n<dl>\n",
                       ap_escape_html(r->pool, qr->label));
        for (j = 0; j < 5 && qr->counted; j++)
            ap_rprintf(r, brief ? "HrflowQueue%s: %" APR_INT64_T_FMT "\n"
                                : "<dt>%s: %" APR_INT64_T_FMT "</dt>\n",
                       labels[j], n[j]);
        ap_rprintf(r, brief ? "HrflowQueueCountedSecondsAgo: %"
                              APR_TIME_T_FMT "\n"
                            : "<dt>Counted %" APR_TIME_T_FMT
                              " s ago by this process</dt>\n",
                   qr->counted ? apr_time_sec(apr_time_now() - qr->counted)
                               : (apr_time_t)-1);
        if (err)
            ap_rprintf(r, brief ? "HrflowQueueError: %s\n"
                                : "<dt>Unreachable: %s</dt>\n",
                       brief ? hf_log_escape(r->pool, err)
                             : ap_escape_html(r->pool, err));
        if (qr->direct)
            ap_rprintf(r, brief ? "HrflowProcessQueueCommitted: %"
                                  APR_UINT64_T_FMT
                                  "\nHrflowProcessQueueCommitGroups: %"
                                  APR_UINT64_T_FMT "\n"
                                : "<dt>This process: %" APR_UINT64_T_FMT
                                  " events committed in %" APR_UINT64_T_FMT
                                  " statements</dt>\n",
                       qr->events, qr->groups);
        if (!brief)
            ap_rputs("</dl>\n", r);
    }
    return OK;
}

/* Why this server cannot accept events now, or NULL. */
static const char *cannot_accept(request_rec *r, const char **error)
{
    const hf_config_t *c = hrflow_server_config(r->server);
    queue_rec *qr;

    if (c->spool) {
        /* Store-and-forward too: the spool answers. */
        *error = "spool_unavailable";
        if (!hrflow_spool_committer(c->spool))
            return "the spool is not ready in this process";
        if (access(apr_pstrcat(r->pool, c->spool, "/new", NULL), W_OK) != 0)
            return apr_psprintf(r->pool, "cannot write to %s/new: %s",
                                c->spool, strerror(errno));
        return NULL;
    }
    if (!c->queue)
        return NULL;             /* synchronous mode */
    *error = "queue_unavailable";
    if (!(qr = queue_of(r->server)))
        return "the queue is not ready in this process";
    /* A commit or a count that worked a moment ago says enough. */
    if (!qr->down[0] && qr->last_ok
        && apr_time_now() - qr->last_ok < HRFLOW_HEALTH_TTL)
        return NULL;
    return refresh(r->pool, qr, HRFLOW_HEALTH_TTL);
}

static int health_handler(request_rec *r)
{
    const char *error = NULL, *why;

    if (!r->handler || strcmp(r->handler, HRFLOW_HEALTH_HANDLER) != 0)
        return DECLINED;
    why = cannot_accept(r, &error);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "application/json");
    if (!why) {
        r->status = HTTP_OK;
        ap_rputs("{\"status\":\"ok\"}", r);
        return OK;
    }
    r->status = HTTP_SERVICE_UNAVAILABLE;
    ap_rprintf(r, "{\"status\":\"error\",\"error\":\"%s\",\"reason\":%s}",
               error, hf_json_quote(r->pool, why));
    return OK;
}

void hrflow_queue_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(queue_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(queue_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(queue_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(health_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, queue_status, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
