/*
 * hf_target_queue.c - store-and-forward (HrflowSpool with HrflowQueue,
 * SPEC 8): the dispatcher's target that forwards an event into the shared
 * queue instead of running its handler.
 *
 * A try succeeds once the queue has committed the event; the spool then
 * records it done, and a worker somewhere runs it.  A queue that cannot
 * take it is not the event's failure: the try waits, with backoff, until
 * the queue is back (or the dispatcher stops, and the event is forwarded
 * at its next start), so that no outage spends HrflowRetry and moves
 * events to failed/.  An event whose commit was answered but whose done
 * mark was lost (a crash in between) is forwarded again: at least once,
 * as everywhere.
 *
 * Each worker slot of the scheduler has a connection of its own, opened on
 * first use.  Fleet-wide order is forwarding order: the scheduler forwards
 * one event of a key at a time, in spool order.
 */
#include <string.h>
#include <apr_strings.h>
#include "hf_sched.h"
#include "hf_queue.h"
#include "hf_target_queue.h"

#define FORWARD_BACKOFF_FIRST apr_time_from_sec(1)
#define FORWARD_BACKOFF_MAX apr_time_from_sec(30)
#define FORWARD_STOP_POLL apr_time_from_msec(100)

struct hf_target_queue_t {
    hf_queue_spec_t spec;
    int slots;
    apr_pool_t **pools;          /* one per slot: its connection's */
    hf_queue_t **conns;          /* one per slot, NULL until first used */
    int *stale;                  /* the slot's last statement failed */
};

hf_target_queue_t *hf_target_queue_create(apr_pool_t *p,
                                          const hf_queue_spec_t *spec,
                                          int concurrency)
{
    hf_target_queue_t *t = apr_pcalloc(p, sizeof *t);
    int i;

    t->spec = *spec;
    t->slots = concurrency + 1;          /* slot 0 is the main thread's */
    t->pools = apr_pcalloc(p, (apr_size_t)t->slots * sizeof *t->pools);
    t->conns = apr_pcalloc(p, (apr_size_t)t->slots * sizeof *t->conns);
    t->stale = apr_pcalloc(p, (apr_size_t)t->slots * sizeof *t->stale);
    /* Made here, in the main thread: a pool's children may not be made
     * by two threads at once. */
    for (i = 0; i < t->slots; i++)
        apr_pool_create(&t->pools[i], p);
    return t;
}

/* One attempt to commit env on slot's connection: NULL, or why not. */
static const char *forward_once(hf_target_queue_t *t, int slot, apr_pool_t *p,
                                const hf_envelope_t *env)
{
    const hf_envelope_t *envs[1];
    const char *err;

    envs[0] = env;
    if (!t->conns[slot])
        err = hf_queue_open(t->pools[slot], &t->spec, &t->conns[slot]);
    else if (t->stale[slot] || !hf_queue_ok(t->conns[slot]))
        err = hf_queue_reset(p, t->conns[slot]);
    else
        err = NULL;
    if (!err)
        err = hf_queue_accept(p, t->conns[slot], envs, 1);
    /* Whatever failed (the connection, the schema), the next attempt
     * opens the connection again and checks the schema. */
    t->stale[slot] = err != NULL;
    return err;
}

/* Sleeps for d, or less when *stop is set. */
static void wait_or_stop(apr_interval_time_t d, atomic_int *stop)
{
    apr_time_t until = apr_time_now() + d;

    while (!atomic_load(stop) && apr_time_now() < until)
        apr_sleep(FORWARD_STOP_POLL);
}

static void forward(void *ctx, int slot, apr_pool_t *p,
                    const hf_sched_job_t *job, atomic_int *stop,
                    const hf_logger_t *log, hf_target_result_t *res)
{
    hf_target_queue_t *t = ctx;
    hf_envelope_t env = job->env;
    apr_interval_time_t backoff = 0;
    int failures = 0;
    const char *err;

    memset(res, 0, sizeof *res);
    if (slot < 0 || slot >= t->slots) {
        res->status = "not started: no connection for this slot";
        return;
    }
    /* The queue's tries start from the first: the spool's are not theirs. */
    env.attempt = 0;
    env.next_attempt = 0;
    env.last_result = NULL;
    while ((err = forward_once(t, slot, p, &env)) != NULL) {
        if (failures++ == 0)
            hf_log(log, HF_LOG_ERR, p,
                   HFLOGNO(00810) "queue %s: cannot take %s yet: %s; "
                   "trying again until it can", t->spec.name, job->label,
                   err);
        backoff = backoff ? backoff * 2 : FORWARD_BACKOFF_FIRST;
        if (backoff > FORWARD_BACKOFF_MAX)
            backoff = FORWARD_BACKOFF_MAX;
        wait_or_stop(backoff, stop);
        if (atomic_load(stop)) {
            res->cancelled = 1;          /* forwarded at the next start */
            return;
        }
    }
    res->ok = 1;
    if (failures)
        hf_log(log, HF_LOG_NOTICE, p,
               HFLOGNO(00811) "queue %s: took %s after %d failed "
               "attempt%s", t->spec.name, job->label, failures,
               failures == 1 ? "" : "s");
    else
        hf_log(log, HF_LOG_INFO, p,
               HFLOGNO(00812) "event %s type=%s delivery=%s "
               "result=forwarded to queue %s (%s)", env.event_id, env.type,
               env.delivery_id, t->spec.name, job->label);
}

const hf_target_t hf_target_queue = {"queue", forward};
