/*
 * hf_deliver.c - synchronous delivery: each event of a received batch, in
 * order, to its handler.
 *
 * Delivery stops at the first failure: the sender, answered 500, sends the
 * batch again, and the events after the failed one must not overtake it.
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
        hf_log(log, level, p, "event %.12s output: %s", ev->id, line);
    if (res->output_dropped)
        hf_log(log, level, p,
               "event %.12s output: %" APR_SIZE_T_FMT " more bytes not logged",
               ev->id, res->output_dropped);
}

const hf_handler_t *hf_route_event(apr_pool_t *p, const hf_config_t *cfg,
                                   const hf_event_t *ev, hf_outcome_t *out,
                                   const hf_logger_t *log)
{
    const hf_handler_t *h = hf_route(cfg->handlers, ev->type);

    if (!h) {
        out->ignored++;
        hf_log(log, HF_LOG_INFO, p,
               "event %s type=%s delivery=%s handler=none result=ignored",
               ev->id, ev->type, ev->delivery_id);
    }
    return h;
}

int hf_run_event(apr_pool_t *p, const hf_event_t *ev,
                 const char *const *argv, int timeout, int attempt,
                 volatile int *cancel, const hf_logger_t *log,
                 hf_run_result_t *res)
{
    hf_run_spec_t spec = {argv, hf_env_block(p, ev->vars), ev->text,
                          ev->len, timeout, HF_OUTPUT_MAX, cancel};
    int ok;

    hf_run(p, &spec, res);
    ok = hf_run_succeeded(res);
    if (!res->started)
        hf_log(log, HF_LOG_ERR, p, "event %.12s: %s", ev->id, res->error);
    log_output(log, p, ev, res, ok ? HF_LOG_INFO : HF_LOG_ERR);
    hf_log(log, ok ? HF_LOG_INFO : HF_LOG_ERR, p,
           "event %s type=%s delivery=%s%s handler=%s result=%s ms=%"
           APR_TIME_T_FMT,
           ev->id, ev->type, ev->delivery_id,
           attempt ? apr_psprintf(p, " attempt=%d", attempt) : "", argv[0],
           hf_run_describe(p, res), apr_time_as_msec(res->elapsed));
    return ok ? 0 : -1;
}

void hf_event_vars(apr_pool_t *p, hf_event_t *ev, const hf_batch_t *batch,
                   const hf_logger_t *log)
{
    int dropped;

    ev->vars = hf_env_build(p, ev, batch, &dropped);
    if (dropped)
        hf_log(log, HF_LOG_WARNING, p,
               "event %.12s: %d variables left out (limits: %d variables, "
               "%d bytes of names and values, names of %d bytes); the full "
               "JSON is on standard input",
               ev->id, dropped, HF_MAX_VARS, HF_MAX_VAR_BYTES,
               HF_MAX_NAME_BYTES);
}

void hf_deliver(apr_pool_t *p, const hf_config_t *cfg, hf_outcome_t *out,
                const hf_logger_t *log)
{
    hf_batch_t batch = {out->events->nelts, out->verified, 1};
    int i;

    for (i = 0; i < out->events->nelts; i++) {
        hf_event_t *ev = APR_ARRAY_IDX(out->events, i, hf_event_t *);
        const hf_handler_t *h = hf_route_event(p, cfg, ev, out, log);
        hf_run_result_t res;
        /* Variables only for an event that runs, and for the first one,
         * whose variables the front end also sets for the access log. */
        if (h || i == 0)
            hf_event_vars(p, ev, &batch, log);
        if (!h)
            continue;
        if (hf_run_event(p, ev, h->argv, hf_config_timeout(cfg), 0, NULL, log,
                         &res) != 0) {
            out->failed++;
            out->rc = HF_E_HANDLER;
            out->error = "handler_failed";
            return;
        }
        out->handled++;
    }
}
