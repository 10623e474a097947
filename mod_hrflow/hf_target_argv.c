/*
 * hf_target_argv.c - the target that runs an event's handler: the argv
 * its endpoint mapped, with SPEC section 4's variables and standard input
 * (hf_run_event), no shell, its timeout, in a process group of its own.
 */
#include <string.h>
#include <apr_strings.h>
#include "hf_sched.h"

/* The event of an envelope, as hf_env_build and hf_run_event want it;
 * NULL, or why it cannot be. */
static const char *event_of(apr_pool_t *p, const hf_envelope_t *env,
                            hf_event_t *ev)
{
    const char *err = NULL;
    unsigned char digest[32];

    memset(ev, 0, sizeof *ev);
    ev->json = hf_json_parse(p, env->text, env->len, &err);
    if (!ev->json || !hf_json_is_object(ev->json))
        return err ? err : "the event is not a JSON object";
    ev->text = env->text;
    ev->len = env->len;
    ev->type = env->type;
    ev->index = env->index;
    hf_sha256(env->text, env->len, digest);
    hf_codec_hex_encode(digest, sizeof digest, ev->id);
    apr_cpystrn(ev->delivery_id, env->delivery_id, sizeof ev->delivery_id);
    return NULL;
}

static void argv_run(void *ctx, int slot, apr_pool_t *p,
                     const hf_sched_job_t *job, atomic_int *stop,
                     const hf_logger_t *log, hf_target_result_t *res)
{
    const hf_envelope_t *env = &job->env;
    hf_event_t ev;
    hf_batch_t batch;
    hf_run_result_t run;
    const char *err;

    (void)ctx;
    (void)slot;
    memset(res, 0, sizeof *res);
    if ((err = event_of(p, env, &ev))) {
        res->final = 1;
        res->error = err;
        res->status = apr_pstrcat(p, "unreadable: ", err, NULL);
        return;
    }
    batch.count = env->count;
    batch.verified = env->verified;
    batch.attempt = env->attempt;
    hf_event_vars(p, &ev, &batch, log);
    hf_run_event(p, &ev, env->argv, env->timeout, env->attempt, stop, log,
                 &run);
    res->cancelled = run.cancelled;
    res->ok = hf_run_succeeded(&run);
    if (!res->ok)
        res->status = run.started
                          ? hf_run_describe(p, &run)
                          : apr_pstrcat(p, "not started: ", run.error, NULL);
    res->output = run.output;
    res->output_len = run.output_len;
}

const hf_target_t hf_target_argv = {"argv", argv_run};
