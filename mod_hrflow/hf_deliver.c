/*
 * hf_deliver.c - synchronous delivery: each event of a received batch, in
 * order, to its handler.
 *
 * Delivery stops at the first failure: the sender, answered 500, sends the
 * batch again, and the events after the failed one must not overtake it.
 *
 * One request must not hold a server worker for MaxEvents handler timeouts:
 * the whole batch gets HrflowTimeout seconds (then the kill grace of the
 * handler that is running), and no handler starts for a client that has
 * gone.  The events left are counted in the answer and logged.
 */
#include <string.h>
#include <apr_strings.h>
#include "hrflow.h"

/* Handler output, one log line per output line, tagged with the event id. */
static void log_output(const hf_logger_t *log, apr_pool_t *p,
                       const hf_event_t *ev, const hf_run_result_t *res,
                       int level)
{
    char *state, *line;
    char *text = apr_pstrmemdup(p, res->output, res->output_len);

    for (line = apr_strtok(text, "\n", &state); line;
         line = apr_strtok(NULL, "\n", &state))
        hf_log(log, level, p,
               HFLOGNO(00311) "event %.12s output: %s", ev->id, line);
    if (res->output_dropped)
        hf_log(log, level, p,
               HFLOGNO(00312)
               "event %.12s output: %" APR_SIZE_T_FMT " more bytes not logged",
               ev->id, res->output_dropped);
}

const hf_handler_t *hf_route_event(apr_pool_t *p, const hf_config_t *cfg,
                                   const hf_event_t *ev, hf_outcome_t *out,
                                   const hf_logger_t *log)
{
    const hf_handler_t *h = hf_route(cfg->handlers, ev->type);

    if (h)
        hf_log(log, HF_LOG_DEBUG, p,
               HFLOGNO(00318) "event %s type=%s routed by %s pattern '%s' "
               "to %s", ev->id, ev->type, h->exact ? "exact" : "wildcard",
               h->pattern, h->argv[0]);
    if (!h) {
        out->ignored++;
        hf_log(log, HF_LOG_INFO, p,
               HFLOGNO(00313)
               "event %s type=%s delivery=%s handler=none result=ignored",
               ev->id, ev->type, ev->delivery_id);
    }
    return h;
}

/* Runs spec's handler for ev and logs its output and result; 0 on success. */
static int run_logged(apr_pool_t *p, const hf_event_t *ev,
                      const hf_run_spec_t *spec, int attempt,
                      const hf_logger_t *log, hf_run_result_t *res)
{
    int ok;

    hf_run(p, spec, res);
    ok = hf_run_succeeded(res);
    if (res->started)
        hf_log(log, HF_LOG_DEBUG, p,
               HFLOGNO(00319) "event %.12s: handler %s ran as pid %ld",
               ev->id, spec->argv[0], res->pid);
    if (!res->started)
        hf_log(log, HF_LOG_ERR, p,
               HFLOGNO(00314) "event %.12s: %s", ev->id, res->error);
    log_output(log, p, ev, res, ok ? HF_LOG_INFO : HF_LOG_ERR);
    hf_log(log, ok ? HF_LOG_INFO : HF_LOG_ERR, p,
           HFLOGNO(00315)
           "event %s type=%s delivery=%s%s handler=%s result=%s ms=%"
           APR_TIME_T_FMT,
           ev->id, ev->type, ev->delivery_id,
           attempt ? apr_psprintf(p, " attempt=%d", attempt) : "",
           spec->argv[0], hf_run_describe(p, res),
           apr_time_as_msec(res->elapsed));
    return ok ? 0 : -1;
}

int hf_run_event(apr_pool_t *p, const hf_event_t *ev,
                 const char *const *argv, int timeout, int attempt,
                 volatile int *cancel, const hf_logger_t *log,
                 hf_run_result_t *res)
{
    hf_run_spec_t spec = {argv, hf_env_block(p, ev->vars), ev->text,
                          ev->len, timeout, HF_OUTPUT_MAX, cancel, 0};

    return run_logged(p, ev, &spec, attempt, log, res);
}

void hf_event_vars(apr_pool_t *p, hf_event_t *ev, const hf_batch_t *batch,
                   const hf_logger_t *log)
{
    int dropped;

    ev->vars = hf_env_build(p, ev, batch, &dropped);
    if (dropped)
        hf_log(log, HF_LOG_WARNING, p,
               HFLOGNO(00316)
               "event %.12s: %d variables left out (limits: %d variables, "
               "%d bytes of names and values, names of %d bytes); the full "
               "JSON is on standard input",
               ev->id, dropped, HF_MAX_VARS, HF_MAX_VAR_BYTES,
               HF_MAX_NAME_BYTES);
}

/* Ends delivery with a 500: the events from index i on are not run. */
static void stop_batch(apr_pool_t *p, hf_outcome_t *out, int i,
                       const char *error, const char *why,
                       const hf_logger_t *log)
{
    out->rc = HF_E_HANDLER;
    out->error = error;
    out->not_run = out->events->nelts - i;
    if (out->not_run > 0)
        hf_log(log, HF_LOG_ERR, p, HFLOGNO(00317) "%s: %d events not run", why,
               out->not_run);
}

void hf_deliver_watched(apr_pool_t *p, const hf_config_t *cfg,
                        hf_outcome_t *out, const hf_logger_t *log,
                        hf_gone_fn *gone, void *gone_ctx)
{
    hf_batch_t batch = {out->events->nelts, out->verified, 1};
    int timeout = hf_config_timeout(cfg);
    /* The budget bounds each handler too: HrflowTimeout 500ms holds. */
    apr_time_t budget_end = apr_time_now()
                            + apr_time_from_msec(hf_config_timeout_ms(cfg));
    int i;

    /* The first event's variables are also the request's, for the access
     * log, whether or not it runs. */
    if (out->events->nelts > 0)
        hf_event_vars(p, APR_ARRAY_IDX(out->events, 0, hf_event_t *), &batch,
                      log);
    for (i = 0; i < out->events->nelts; i++) {
        hf_event_t *ev = APR_ARRAY_IDX(out->events, i, hf_event_t *);
        const hf_handler_t *h;
        hf_run_result_t res;
        hf_run_spec_t spec = {NULL, NULL, ev->text, ev->len, timeout,
                              HF_OUTPUT_MAX, NULL, budget_end};
        if (gone && gone(gone_ctx)) {
            stop_batch(p, out, i, "client_gone", "client gone", log);
            return;
        }
        if (!(h = hf_route_event(p, cfg, ev, out, log)))
            continue;
        /* Variables only for an event that runs: ignored ones cost none. */
        if (!ev->vars)
            hf_event_vars(p, ev, &batch, log);
        if (apr_time_now() >= budget_end) {
            stop_batch(p, out, i, "time_budget_spent",
                       apr_psprintf(p, "the batch's time budget "
                                    "(HrflowTimeout %d ms) is spent",
                                    hf_config_timeout_ms(cfg)),
                       log);
            return;
        }
        spec.argv = h->argv;
        spec.envp = hf_env_block(p, ev->vars);
        if (run_logged(p, ev, &spec, 0, log, &res) != 0) {
            out->failed++;
            stop_batch(p, out, i + 1, "handler_failed",
                       apr_psprintf(p, "event %.12s failed", ev->id), log);
            return;
        }
        out->handled++;
    }
}

void hf_deliver(apr_pool_t *p, const hf_config_t *cfg, hf_outcome_t *out,
                const hf_logger_t *log)
{
    hf_deliver_watched(p, cfg, out, log, NULL, NULL);
}
