/*
 * mod_hrflow.h - what the files of the Apache module share.
 */
#ifndef MOD_HRFLOW_H
#define MOD_HRFLOW_H

#include <httpd.h>
#include <http_config.h>
#include "hrflow.h"
#include "hf_queue.h"

extern module AP_MODULE_DECLARE_DATA hrflow_module;

/* The server's durable-mode settings (HrflowSpool and friends). */
const hf_config_t *hrflow_server_config(const server_rec *s);
/* "the main server", or "virtual host NAME (FILE line N)": for messages. */
const char *hrflow_server_name(apr_pool_t *p, const server_rec *s);

/* Whether r's handler is the endpoint's, SetHandler hrflow-webhook. */
int hrflow_is_endpoint(const request_rec *r);

/* mod_hrflow_body.c: what the endpoint and the gateway share.  A request's
 * method, headers and logger for the core, its body empty. */
void hrflow_request_init(request_rec *r, hf_request_t *req, hf_logger_t *log);
/* Reads r's body from the filters `from` (r->input_filters, or the
 * protocol's) into req: at most max bytes (req->body_too_large past it, or
 * past LimitRequestBody); OK, or the HTTP status of a broken body. */
int hrflow_read_body(request_rec *r, ap_filter_t *from, apr_off_t max,
                     hf_request_t *req);
/* The JSON answer of SPEC 5 for out, with its status (405: Allow). */
int hrflow_respond(request_rec *r, const hf_outcome_t *out);

/* mod_hrflow_gateway.c: gateway mode, HrflowVerify on (SPEC 9). */
void hrflow_gateway_register_hooks(apr_pool_t *p);
/* Whether r is in a gateway section and not yet verified: an error httpd
 * answers (a broken chunk) gets the endpoint's JSON then. */
int hrflow_gateway_pending(request_rec *r);

/* mod_hrflow_spool.c: durable mode's share of the module. */
void hrflow_spool_register_hooks(apr_pool_t *p);
/* The group committer of this process for a spool, or NULL. */
hf_committer_t *hrflow_spool_committer(const char *dir);
/* Whether a spool's directory can be made, for configtest. */
const char *hrflow_spool_check(apr_pool_t *p, const char *dir);

/* A helper process that the parent forks as mod_cgid forks its daemon (the
 * spool's dispatcher, fleet mode's worker): it closes the listeners, drops
 * to the server's User, runs run() until *stop, and is started again when
 * it dies and stopped (TERM, then KILL) with the configuration pool.  run
 * returns 0, or -1 when it cannot start (the next one waits 5 s first). */
typedef int hrflow_helper_fn(apr_pool_t *p, void *ctx, const hf_logger_t *log,
                             atomic_int *stop, int wake_fd);
typedef struct {
    const char *what;            /* for the log: "spool /var/spool/hrflow" */
    const char *role;            /* "dispatcher", "worker" */
    hrflow_helper_fn *run;
    void *ctx;
    server_rec *server;
    apr_pool_t *pool;            /* the configuration's */
    apr_proc_t proc;
} hrflow_helper_t;
int hrflow_helper_start(hrflow_helper_t *h);

/* mod_hrflow_queue.c: fleet mode's share of the module (SPEC 8). */
void hrflow_queue_register_hooks(apr_pool_t *p);
/* Commits out's routed events to the server's queue (direct mode):
 * out->queued, or HF_E_SPOOL with "queue_unavailable". */
void hrflow_queue_accept(request_rec *r, const hf_config_t *cfg,
                         hf_outcome_t *out, const hf_logger_t *log);
/* Startup checks of a server's fleet settings, and an endpoint's handlers
 * noted for the worker Apache starts: 0, or -1 (logged). */
int hrflow_queue_check_server(apr_pool_t *pconf, apr_pool_t *ptemp,
                              server_rec *s);
void hrflow_queue_note_endpoint(server_rec *s, const hf_config_t *cfg);
/* The queue a server's events go to (its password read), or NULL. */
const hf_queue_spec_t *hrflow_queue_spec(const server_rec *s);

#endif
