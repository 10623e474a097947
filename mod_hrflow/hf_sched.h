/*
 * hf_sched.h - the scheduler shared by the spool's dispatcher and the
 * queue's worker (SPEC sections 6 and 8), with the two things that differ
 * behind interfaces:
 *
 * - a store (hf_store_t) keeps the events and their outcomes: the spool's
 *   folders (hf_store_spool.c) or the PostgreSQL queue (hf_store_queue.c);
 * - a target (hf_target_t) carries out one try of an event: run its
 *   handler's argv (hf_target_argv.c), forward it into the queue
 *   (hf_target_queue.c); a later HTTP target is one new file.
 *
 * The scheduler keeps the rules: events of one order key run one at a
 * time, in the order the store gives (a failing one holds back only its
 * own key), at most HrflowConcurrency at once; a failed try is retried
 * HrflowRetry times after hf_spool_retry_delay, then failed for good; an
 * outcome the store could not record is asked again after a backoff (1 s,
 * doubling, at most a minute), the event never running again meanwhile
 * (a success or a final failure no longer holds back its key then, a
 * retry does).
 * Its cost per event does not depend on how many wait: each key has a
 * FIFO, keys whose head may run sit on a ready list, heads that wait for a
 * time in a heap.
 *
 * Threads.  One main thread (the caller of hf_sched_run) takes in news
 * from the store and decides what runs; HrflowConcurrency worker threads
 * each carry out one try at a time.  Every store and target call says
 * below which thread makes it.  Calls for one event never overlap; calls
 * for different events do (main thread and workers, workers among
 * themselves): what a store shares between them it must lock itself.  A
 * store that holds connections (PostgreSQL) keeps one per slot: slot 0 is
 * the main thread, slots 1..HrflowConcurrency the workers, each slot only
 * ever used by one thread at a time.
 */
#ifndef HF_SCHED_H
#define HF_SCHED_H

#include "hrflow.h"

typedef struct hf_sched_t hf_sched_t;

/* ---- one try ------------------------------------------------------------ */

/* What a store hands to a target for one try (hf_store_t.begin). */
typedef struct {
    hf_envelope_t env;           /* env.attempt: this try's number, 1.. */
    const char *label;           /* names the event in log lines:
                                  * "spool: NAME", "queue: event 42" */
} hf_sched_job_t;

/* What a target reports of one try. */
typedef struct {
    int ok;                      /* succeeded */
    int cancelled;               /* stopped through *stop: not a try and
                                  * nothing is recorded; the store runs it
                                  * again (the spool at its next start, the
                                  * queue when the lease has passed) */
    int final;                   /* a failure no retry can mend (the event
                                  * is unreadable): failed at once, with
                                  * attempt 0 and error in the log */
    int later;                   /* the target cannot take it now (where it
                                  * forwards to is down; logged by the
                                  * target): nothing is recorded, the event
                                  * is begun again after a backoff, holding
                                  * its key, and this is no failure */
    const char *error;           /* final: why */
    const char *status;          /* not ok: "exit 3", "timeout",
                                  * "not started: REASON" */
    const char *output;          /* standard output and error, kept with a */
    apr_size_t output_len;       /* failure (may be NULL) */
} hf_target_result_t;

typedef struct {
    const char *name;            /* "argv", "queue" */
    /* A worker thread (slot 1..HrflowConcurrency), concurrently with the
     * other workers: carries out one try of job, stopping early when
     * *stop becomes non-zero.  Fills res; memory from p (cleared after
     * the try is recorded). */
    void (*run)(void *ctx, int slot, apr_pool_t *p, const hf_sched_job_t *job,
                atomic_int *stop, const hf_logger_t *log,
                hf_target_result_t *res);
} hf_target_t;

/* ---- outcomes ----------------------------------------------------------- */

typedef enum {
    HF_SCHED_DONE,               /* succeeded */
    HF_SCHED_RETRY,              /* failed, tried again at due */
    HF_SCHED_FAILED              /* failed for good */
} hf_sched_verdict_t;

typedef struct {
    hf_sched_verdict_t verdict;
    int attempt;                 /* tries made, this one included (0: the
                                  * event could not be run at all) */
    apr_time_t due;              /* RETRY: not before then */
    const char *status;          /* RETRY, FAILED: the last try's result */
    const char *output;          /* FAILED: the last try's output */
    apr_size_t output_len;
    const char *what;            /* FAILED: the event for the log line the
                                  * store writes, "event ID type=T
                                  * delivery=D failed 3 times" */
} hf_sched_outcome_t;

/* What store calls return. */
#define HF_SCHED_OK 0
#define HF_SCHED_LATER 1         /* storage refused (the store logged why):
                                  * asked again after a backoff */
#define HF_SCHED_GONE 2          /* no longer the store's to run or record
                                  * (a fenced lease, a file removed by the
                                  * administrator): forgotten */
#define HF_SCHED_BAD 3           /* begin: the event can never run; the
                                  * scheduler records it FAILED at once */

/* ---- the store ---------------------------------------------------------- */

/* Each event the scheduler knows is the store's void *data, given to
 * hf_sched_add and handed back to every call about that event. */
typedef struct {
    const char *name;            /* "spool", "queue" */
    /* 1: a recorded RETRY stays with the scheduler, which begins it again
     * when due (the spool lists every waiting event).  0: the scheduler
     * releases it once recorded, and the store adds it again when it is
     * due (the queue claims only what may run now). */
    int retries_stay;

    /* Main thread, once, before the workers start: adds what the store
     * holds already (hf_sched_add).  0, or -1 when the scheduler cannot
     * start (logged). */
    int (*open)(void *ctx, hf_sched_t *s, apr_pool_t *p);
    /* Main thread, before each wait: a descriptor that becomes readable on
     * news (inotify on new/, the libpq socket), or -1.  Asked every time,
     * so it may change (a reconnect). */
    int (*fd)(void *ctx);
    /* Main thread, after every wake-up (news on fd, a try finished, a wake
     * time passed, a signal): takes in news with hf_sched_add; a store
     * that leases what it hands out claims at most want events (the
     * workers that would be idle; 0: claim none); housekeeping.  Returns
     * the time by which it wants to be called again (due retries, leases
     * that expire, a purge), or 0: only on news. */
    apr_time_t (*poll)(void *ctx, hf_sched_t *s, int want, apr_pool_t *p);
    /* A worker thread (slot 1..): prepares a try of data (the spool moves
     * its file to run/ and reads it) and fills job, with memory from p.
     * HF_SCHED_OK; HF_SCHED_LATER: cannot start now (begun again after a
     * backoff, holding its key); HF_SCHED_BAD: never runnable, *error says
     * why; HF_SCHED_GONE. */
    int (*begin)(void *ctx, void *data, int slot, apr_pool_t *p,
                 hf_sched_job_t *job, const char **error);
    /* A worker thread after its try (slot 1..), or the main thread (slot
     * 0) asking again for an outcome that could not be recorded: records
     * o durably (o and its strings live only during the call).
     * HF_SCHED_OK; HF_SCHED_LATER: logged by the store, asked again after
     * a backoff; HF_SCHED_GONE: the outcome was not the store's to record
     * (fenced: logged by the store). */
    int (*record)(void *ctx, void *data, int slot,
                  const hf_sched_outcome_t *o, apr_pool_t *p);
    /* Main thread: the scheduler forgets data (recorded, released for the
     * store to add again, gone, or at the end): free it. */
    void (*release)(void *ctx, void *data);
    /* Main thread, once, after the workers have ended and every event has
     * been released. */
    void (*close)(void *ctx, apr_pool_t *p);
} hf_store_t;

/* ---- the scheduler ------------------------------------------------------ */

typedef struct {
    const char *name;            /* starts its log lines: "spool DIR" */
    int concurrency;             /* worker threads */
    int retry;                   /* further tries after the first */
    int retry_delay;             /* seconds before the first retry */
    const hf_logger_t *log;
    atomic_int *stop;            /* as hf_dispatch_spec_t's */
    int wake_fd;                 /* readable when stop is set, or -1 */
    const hf_store_t *store;
    void *store_ctx;
    const hf_target_t *target;
    void *target_ctx;
} hf_sched_spec_t;

/* Runs the store's events through the target until *stop; 0, or -1 when
 * it cannot start (logged).  Tries under way when *stop is set are
 * cancelled (their events are not recorded). */
int hf_sched_run(apr_pool_t *p, const hf_sched_spec_t *spec);

/* Main thread only (the store's open and poll). */

/* Adds an event.  key: its order key (copied), or NULL for none; order:
 * its place among its key's waiting events (strcmp order; the store keeps
 * the string until release), or NULL: after them (the store gives them in
 * order); due: not before then (0: at once).  An event is never placed
 * before one of its key that has started.  0, or -1 out of memory (the
 * store keeps it and adds it later). */
int hf_sched_add(hf_sched_t *s, const char *key, const char *order,
                 apr_time_t due, void *data);
/* Adds an event whose outcome o is known but not recorded yet (the spool:
 * a success marked in done/ whose file could not leave run/): it never
 * runs; record is asked (slot 0) until it is stored.  Its key is held
 * only for a RETRY.  0, or -1 out of memory. */
int hf_sched_add_outcome(hf_sched_t *s, const char *key, const char *order,
                         void *data, const hf_sched_outcome_t *o);
/* Events known: waiting, running, or with an outcome to record. */
int hf_sched_count(const hf_sched_t *s);
const hf_sched_spec_t *hf_sched_spec(const hf_sched_t *s);

/* ---- the stores and targets of the core --------------------------------- */

/* hf_store_spool.c: the folders of HrflowSpool (SPEC 6); its own file
 * lock, pid file and leftover session as hf_dispatch_run keeps them. */
typedef struct hf_store_spool_t hf_store_spool_t;
extern const hf_store_t hf_store_spool;
/* A spool store for dir, from p; log and stop as in the spec. */
hf_store_spool_t *hf_store_spool_create(apr_pool_t *p, const char *dir,
                                        const hf_logger_t *log,
                                        atomic_int *stop);

/* hf_dispatch_run with another target than argv (store-and-forward:
 * hf_target_queue). */
int hf_dispatch_run_target(apr_pool_t *p, const hf_dispatch_spec_t *s,
                           const hf_target_t *target, void *target_ctx);

/* hf_target_argv.c: runs the envelope's argv with hf_run_event (SPEC 4);
 * ctx unused (NULL). */
extern const hf_target_t hf_target_argv;

#endif
