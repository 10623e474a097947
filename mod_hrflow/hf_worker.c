/*
 * hf_worker.c - the queue's worker (SPEC 8): the shared scheduler
 * (hf_sched.c) with the PostgreSQL queue as its store and handler argv as
 * its target, so that a worker keeps exactly the dispatcher's rules:
 * HrflowConcurrency, HrflowRetry with hf_spool_retry_delay, SPEC 4's
 * contract through hf_run_event.  hrflow-worker runs it, and so does the
 * process Apache starts for HrflowWorker on.
 */
#include <string.h>
#include <apr_strings.h>
#include "hf_queue.h"
#include "hf_sched.h"
#include "hf_store_queue.h"

int hf_worker_run(apr_pool_t *p, const hf_worker_spec_t *spec)
{
    hf_store_queue_t *st;
    hf_sched_spec_t s;
    const char *name = spec->queue.name ? spec->queue.name
                                        : HF_DEFAULT_QUEUE_NAME;
    int rc;

    if (!spec->handlers || spec->handlers->nelts == 0) {
        hf_log(spec->log, HF_LOG_ERR, p,
               HFLOGNO(00709) "queue %s: no HrflowHandler: a worker claims "
               "only events of its own handlers' programs", name);
        return -1;
    }
    st = hf_store_queue_create(p, spec);
    memset(&s, 0, sizeof s);
    s.name = apr_pstrcat(p, "queue ", name, NULL);
    s.concurrency = spec->concurrency > 0 ? spec->concurrency
                                          : HF_DEFAULT_CONCURRENCY;
    s.retry = spec->retry >= 0 ? spec->retry : HF_DEFAULT_RETRY;
    s.retry_delay = spec->retry_delay > 0 ? spec->retry_delay
                                          : HF_DEFAULT_RETRY_DELAY;
    s.log = spec->log;
    s.stop = spec->stop;
    s.wake_fd = spec->wake_fd;
    s.store = &hf_store_queue;
    s.store_ctx = st;
    s.target = &hf_target_argv;
    s.target_ctx = NULL;
    /* A worker that dies takes its handlers with it: its leases pass and
     * the events run elsewhere, never twice at once. */
    hf_run_die_with_us();
    hf_log(spec->log, HF_LOG_NOTICE, p,
           HFLOGNO(00701) "worker %s started on queue %s: %d program(s), "
           "concurrency %d, %d retries", hf_store_queue_label(st), name,
           hf_store_queue_programs(st), s.concurrency, s.retry);
    rc = hf_sched_run(p, &s);
    hf_log(spec->log, HF_LOG_NOTICE, p,
           HFLOGNO(00712) "worker %s stopped", hf_store_queue_label(st));
    return rc;
}
