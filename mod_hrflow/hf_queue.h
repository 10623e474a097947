/*
 * hf_queue.h - the shared queue in PostgreSQL (SPEC section 8): receivers
 * commit accepted events to it, workers on any hosts claim and run them.
 *
 * Only this part of the core sees libpq; it is a library of its own
 * (libhrflow_queue), linked into the module, hrflow-worker and hrflowctl,
 * never into the static CGI.
 *
 * The rules live in the database, so that they hold across hosts:
 *
 * - An event is a row of NAME_events, its id from a sequence.  Its spool
 *   envelope (hf_spool_envelope_encode: type, ids, order key, handler argv,
 *   timeout, the event's text) is stored as it is; state, attempt, due
 *   time, lease and last result are columns.
 * - Per-key order: only a "head" row may be claimed.  A row is the head of
 *   its order key when no other unfinished row of that key exists; a row
 *   with no key is always a head.  Receivers and finishers take a
 *   transaction-scoped advisory lock per key before they read or change
 *   heads, so within a key ids follow commit order and exactly one row is
 *   head.  Claims therefore never look past a key's first row: the cost of
 *   a claim does not grow with the backlog.
 * - Claims: UPDATE ... WHERE id IN (SELECT heads that are due, whose
 *   handler is one of the worker's programs, ORDER BY id LIMIT n FOR
 *   UPDATE SKIP LOCKED) RETURNING ..., which gives each claim a new
 *   fencing token and a lease (the event's timeout + the kill grace + a
 *   margin).  A running row whose lease has passed may be claimed again.
 * - Outcomes are written only WHERE id = $id AND token = $token AND state
 *   = 'running': a late result of an expired lease changes nothing, and
 *   the caller learns it was fenced.
 */
#ifndef HF_QUEUE_H
#define HF_QUEUE_H

#include "hrflow.h"

#define HF_QUEUE_SCHEMA_VERSION 1

typedef struct hf_queue_t hf_queue_t;   /* one connection */

typedef struct {
    const char *url;             /* libpq URI */
    const char *password;        /* or NULL: from the URI or ~/.pgpass */
    const char *name;            /* HrflowQueueName: table prefix */
    int timeout_ms;              /* connecting, and each statement */
    const char *app;             /* application_name: "hrflow-receiver" */
} hf_queue_spec_t;

/* Connects and checks the schema.  NULL, or the reason; a missing or older
 * schema says so and names the fix ("... run hrflowctl init URL").  The
 * password is never part of a reason.  *q is set even on failure (closed
 * with hf_queue_close) so that a caller can retry with hf_queue_reset. */
const char *hf_queue_open(apr_pool_t *p, const hf_queue_spec_t *spec,
                          hf_queue_t **q);
/* Reconnects a broken connection (within spec->timeout_ms): NULL or why. */
const char *hf_queue_reset(apr_pool_t *p, hf_queue_t *q);
/* Whether the connection is up (the schema aside). */
int hf_queue_ok(const hf_queue_t *q);
/* The schema version the last open or reset found: 0 none, -1 unknown. */
int hf_queue_schema_version(const hf_queue_t *q);
void hf_queue_close(hf_queue_t *q);

/* The password a libpq URI or connection string carries (user:PASS@, or
 * password=PASS), or NULL; and the URI with it replaced by ***, for
 * messages. */
const char *hf_queue_url_password(apr_pool_t *p, const char *url);
const char *hf_queue_url_redact(apr_pool_t *p, const char *url);

/* Creates or upgrades the schema (hrflowctl init): NULL or the reason;
 * *from is the version found (0: none). */
const char *hf_queue_init(apr_pool_t *p, hf_queue_t *q, int *from);

/* Commits n envelopes in one statement (one commit group), and notifies
 * the workers.  NULL when they are durable in the database; else the
 * reason, and none of them is stored. */
const char *hf_queue_accept(apr_pool_t *p, hf_queue_t *q,
                            const hf_envelope_t *const *envs, int n);

/* A claimed event. */
typedef struct {
    apr_int64_t id;
    apr_int64_t token;           /* the fencing token of this claim */
    hf_envelope_t env;           /* env.attempt: this try's number (1..) */
} hf_queue_claim_t;

/* Claims up to max events, as above, for worker (a label: "host:pid"),
 * whose handler program (argv[0]) is one of programs (NULL-terminated).
 * Appends hf_queue_claim_t * to claims; NULL or the reason. */
const char *hf_queue_claim(apr_pool_t *p, hf_queue_t *q, const char *worker,
                           const char *const *programs, int max,
                           apr_array_header_t *claims);

/* The outcome of a claim.  *fenced is set (and nothing changed) when the
 * lease was no longer this claim's.  A retry's due time is read on this
 * host's clock and stored as the wait from the database's own. */
const char *hf_queue_done(apr_pool_t *p, hf_queue_t *q,
                          const hf_queue_claim_t *c, int *fenced);
const char *hf_queue_retry(apr_pool_t *p, hf_queue_t *q,
                           const hf_queue_claim_t *c, apr_time_t due,
                           const char *result, int *fenced);
const char *hf_queue_fail(apr_pool_t *p, hf_queue_t *q,
                          const hf_queue_claim_t *c, const char *status,
                          const char *output, apr_size_t output_len,
                          int *fenced);

/* Deletes up to 1000 done events finished more than keep_sec ago; *purged
 * says how many. */
const char *hf_queue_purge(apr_pool_t *p, hf_queue_t *q, int keep_sec,
                           int *purged);

/* Hands back a claim whose try was cut short (the worker stops): its
 * lease ends now, so that it runs again at once; NULL or the reason. */
const char *hf_queue_release(apr_pool_t *p, hf_queue_t *q,
                             const hf_queue_claim_t *c);

/* Waits up to timeout for a notification of new events, or for data on
 * the connection: 1 notified, 0 timed out, -1 broken.  LISTEN is issued
 * on first use. */
int hf_queue_wait(apr_pool_t *p, hf_queue_t *q, apr_interval_time_t timeout,
                  int wake_fd);

/* hf_queue_wait in two halves, for a caller with its own poll loop: the
 * connection's socket (LISTEN issued on first use), or -1 when broken;
 * then, when it is readable, whether a notification came (1), not (0),
 * or the connection broke (-1). */
int hf_queue_fd(apr_pool_t *p, hf_queue_t *q);
int hf_queue_notified(hf_queue_t *q);

/* Events per state, for mod_status, hrflowctl and the health check. */
typedef struct {
    apr_int64_t queued, retry, running, failed, done;
} hf_queue_counts_t;
const char *hf_queue_counts(apr_pool_t *p, hf_queue_t *q,
                            hf_queue_counts_t *counts);
/* NULL when the database takes writes now; else why not (a hot standby,
 * default_transaction_read_only): reads work there, commits do not. */
const char *hf_queue_writable(apr_pool_t *p, hf_queue_t *q);

/* hrflowctl: one row as shown to an administrator. */
typedef struct {
    apr_int64_t id;
    const char *state;           /* queued retry running failed done */
    int attempt;
    apr_time_t received, due;
    const char *worker;          /* of the running claim, or NULL */
    const char *last_result;
    const char *output;          /* failed: the last try's */
    hf_envelope_t env;
} hf_queue_row_t;
/* Rows in state (NULL: every unfinished and failed one), oldest first, at
 * most limit; appends hf_queue_row_t *. */
const char *hf_queue_list(apr_pool_t *p, hf_queue_t *q, const char *state,
                          int limit, apr_array_header_t *rows);
const char *hf_queue_show(apr_pool_t *p, hf_queue_t *q, apr_int64_t id,
                          hf_queue_row_t *row, int *found);
/* A failed event queued again, tries from zero, behind its key. */
const char *hf_queue_requeue(apr_pool_t *p, hf_queue_t *q, apr_int64_t id,
                             int *found);
/* The same, telling the event's new id (0: no failed event id). */
const char *hf_queue_requeue_id(apr_pool_t *p, hf_queue_t *q, apr_int64_t id,
                                apr_int64_t *new_id);

/* ---- the worker (hf_worker.c): hrflow-worker, and HrflowWorker on ------ */
typedef struct {
    hf_queue_spec_t queue;
    const apr_array_header_t *handlers;  /* hf_handler_t: what it may run */
    int concurrency, retry, retry_delay;
    const hf_logger_t *log;
    atomic_int *stop;            /* as hf_dispatch_spec_t's */
    int wake_fd;
    /* Or NULL.  Once non-zero: claim nothing more, let the handlers that
     * run finish and record them, then return (hrflow-worker's SIGTERM);
     * *stop still cancels at once. */
    atomic_int *drain;
} hf_worker_spec_t;

/* Claims and runs the queue's events until *stop; 0, or -1 when it cannot
 * start (logged).  A lost database is waited for, with backoff. */
int hf_worker_run(apr_pool_t *p, const hf_worker_spec_t *spec);

#endif
