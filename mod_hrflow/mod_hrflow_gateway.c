/*
 * mod_hrflow_gateway.c - gateway mode (SPEC 9): `HrflowVerify on` in a
 * section whose content handler is another module's (php-fpm through
 * mod_proxy_fcgi, mod_proxy_http, mod_cgid, a static file).
 *
 * The check runs in the fixups phase: after the section's access control
 * (Require, mod_auth_*), whose refusals then cost no body read, and before
 * the handler.  It reads the body from the protocol's filters, as the
 * endpoint would, and refuses the request itself (the endpoint's status
 * and JSON answer, the handler never runs), or lets it through with:
 *
 * - the bytes the signature covered as the request's body: the protocol's
 *   input (HTTP_IN, which has given all it had) is replaced by a filter
 *   replaying them, so every handler reads them, with a Content-Length.
 *   A protocol filter, and not a resource one, because it must survive an
 *   internal redirect (mod_rewrite, ErrorDocument) and a DirectoryIndex
 *   lookup, which rebuild the resource filters, and because mod_proxy_http
 *   streams a body with its Content-Length only when no resource filter
 *   could change it;
 * - the first event's HRFLOW_* variables in r->subprocess_env.
 *
 * A request is verified once: the redirects and subrequests that follow
 * it get its variables.  A subrequest into a gateway section whose request
 * was not verified is refused (it has no body to verify).
 */
#include <string.h>
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <apr_strings.h>
#include "mod_hrflow.h"

APLOG_USE_MODULE(hrflow);

#define REPLAY_FILTER "HRFLOW_REPLAY"

/* What a verified request hands on to its redirects and subrequests, kept
 * in the request_config of the request that came from the client. */
typedef struct {
    apr_table_t *vars;
} gateway_pass_t;

/* The replay of the verified bytes. */
typedef struct {
    const char *data;
    apr_size_t len;
    apr_size_t off;
    apr_pool_t *pool;   /* the client's request's: holds data */
} replay_t;

static request_rec *client_request(request_rec *r)
{
    for (;;) {
        if (r->main)
            r = r->main;
        else if (r->prev)
            r = r->prev;
        else
            return r;
    }
}

static gateway_pass_t *passed(request_rec *r)
{
    return ap_get_module_config(client_request(r)->request_config,
                                &hrflow_module);
}

/* ---- the replay filter ------------------------------------------------ */

static apr_status_t replay_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                  ap_input_mode_t mode, apr_read_type_e block,
                                  apr_off_t readbytes)
{
    replay_t *rp = f->ctx;
    apr_bucket_alloc_t *ba = f->c->bucket_alloc;
    apr_size_t n = rp->len - rp->off;

    if (mode != AP_MODE_READBYTES && mode != AP_MODE_GETLINE
        && mode != AP_MODE_SPECULATIVE && mode != AP_MODE_EXHAUSTIVE)
        return ap_get_brigade(f->next, bb, mode, block, readbytes);
    if (mode != AP_MODE_EXHAUSTIVE && readbytes > 0 && (apr_off_t)n > readbytes)
        n = (apr_size_t)readbytes;
    if (mode == AP_MODE_GETLINE && n > 0) {
        const char *lf = memchr(rp->data + rp->off, '\n', n);
        if (lf)
            n = (apr_size_t)(lf - (rp->data + rp->off)) + 1;
    }
    if (n > 0)
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(rp->data + rp->off,
                                                           n, rp->pool, ba));
    if (mode == AP_MODE_SPECULATIVE)
        return APR_SUCCESS;
    rp->off += n;
    /* The end with the last bytes, as HTTP_IN gives it: a reader sees the
     * whole body came at once. */
    if (rp->off == rp->len)
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    return APR_SUCCESS;
}

/* The request's protocol input, which has reached its end, gives way to
 * the replay; the connection's filters below stay. */
static void replace_body(request_rec *r, const char *data, apr_size_t len)
{
    replay_t *rp = apr_pcalloc(r->pool, sizeof *rp);
    ap_filter_t *f, *next;

    rp->data = data;
    rp->len = len;
    rp->pool = client_request(r)->pool;
    for (f = r->proto_input_filters;
         f && f->frec->ftype < AP_FTYPE_CONNECTION; f = next) {
        next = f->next;
        if (f->r == r)
            ap_remove_input_filter(f);
    }
    ap_add_input_filter(REPLAY_FILTER, rp, r, r->connection);
    apr_table_setn(r->headers_in, "Content-Length",
                   apr_off_t_toa(r->pool, (apr_off_t)len));
    apr_table_unset(r->headers_in, "Transfer-Encoding");
    r->read_chunked = 0;
    r->remaining = (apr_off_t)len;
}

/* ---- the check -------------------------------------------------------- */

/* The first event's variables (SPEC 4) and the batch's size; no try has
 * been made, so no HRFLOW_ATTEMPT.  An accepted request has an event: an
 * empty batch is refused. */
static apr_table_t *pass_vars(request_rec *r, const hf_outcome_t *out)
{
    hf_batch_t batch = {out->events->nelts, out->verified, 0};
    int dropped = 0;
    apr_table_t *vars = hf_env_build(
        r->pool, APR_ARRAY_IDX(out->events, 0, hf_event_t *), &batch,
        &dropped);

    apr_table_unset(vars, "HRFLOW_ATTEMPT");
    if (dropped)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      HFLOGNO(01004) "%d variables of the first event left "
                      "out by the limits; the body holds them all",
                      dropped);
    return vars;
}

/* Lets a verified request through: its body (the signed payload, when
 * there is one, else what was read) and its variables. */
static void let_through(request_rec *r, const hf_request_t *req,
                        const hf_signature_t *sig, const hf_outcome_t *out)
{
    gateway_pass_t *pass = apr_pcalloc(r->pool, sizeof *pass);

    if (sig->payload) {
        replace_body(r, (const char *)sig->payload, sig->payload_len);
        apr_table_setn(r->headers_in, "Content-Type", "application/json");
        apr_table_unset(r->headers_in, "Content-Encoding");
    }
    else
        replace_body(r, req->body, req->body_len);
    pass->vars = pass_vars(r, out);
    ap_set_module_config(client_request(r)->request_config, &hrflow_module,
                         pass);
    apr_table_overlap(r->subprocess_env, pass->vars, APR_OVERLAP_TABLES_SET);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  HFLOGNO(01005) "verified (%s): %d events, %" APR_SIZE_T_FMT
                  " bytes passed to the handler",
                  out->verified ? "signed" : "unsigned", out->events->nelts,
                  sig->payload ? sig->payload_len : req->body_len);
}

static int verify(request_rec *r, const hf_config_t *cfg)
{
    hf_request_t req;
    hf_logger_t log;
    hf_outcome_t out;
    hf_signature_t sig;
    int rc;

    hrflow_request_init(r, &req, &log);
    if (r->method_number == M_POST
        && (rc = hrflow_read_body(r, r->proto_input_filters,
                                  hf_config_max_body(cfg), &req)) != OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      HFLOGNO(01003) "cannot read the body (%d)", rc);
        if (rc != HTTP_BAD_REQUEST)
            return rc;
        memset(&out, 0, sizeof out);
        out.rc = HF_E_MALFORMED;
        out.error = "unreadable_body";
        r->connection->keepalive = AP_CONN_CLOSE;
        hrflow_respond(r, &out);
        return DONE;
    }
    hf_receive_signed(r->pool, cfg, &req, &out, &sig);
    if (out.rc != HF_OK) {
        hf_receive_log_refusal(r->pool, cfg, &out, &log);
        hrflow_respond(r, &out);
        return DONE;
    }
    let_through(r, &req, &sig, &out);
    return OK;
}

static int gateway_fixups(request_rec *r)
{
    const hf_config_t *cfg = ap_get_module_config(r->per_dir_config,
                                                  &hrflow_module);
    gateway_pass_t *pass = passed(r);

    if (pass) {
        apr_table_overlap(r->subprocess_env, pass->vars,
                          APR_OVERLAP_TABLES_SET);
        return OK;
    }
    /* An endpoint checks its requests itself. */
    if (!cfg || !hf_config_verify(cfg) || hrflow_is_endpoint(r))
        return DECLINED;
    if (r->main) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      HFLOGNO(01006) "subrequest for %s refused: its "
                      "request was not verified (HrflowVerify on)",
                      r->uri);
        return HTTP_UNAUTHORIZED;
    }
    return verify(r, cfg);
}

/* ---- startup checks --------------------------------------------------- */

static int is_on(const char *args)
{
    return args && !strcasecmp(args, "on");
}

static int is_endpoint_directive(apr_pool_t *p, const ap_directive_t *d)
{
    const char *args = d->args;

    if (!strcasecmp(d->directive, "HrflowHandler"))
        return 1;
    return !strcasecmp(d->directive, "SetHandler") && args
           && !strcasecmp(ap_getword_conf(p, &args), "hrflow-webhook");
}

/* HrflowVerify on names another module's handler as the application: a
 * section that also makes itself an endpoint is refused (HF01001). */
static int check_sections(apr_pool_t *p, const ap_directive_t *first)
{
    const ap_directive_t *d, *verify = NULL, *endpoint = NULL;
    int bad = 0;

    for (d = first; d; d = d->next) {
        if (!strcasecmp(d->directive, "HrflowVerify"))
            verify = is_on(d->args) ? d : NULL;
        else if (!endpoint && is_endpoint_directive(p, d))
            endpoint = d;
        if (d->first_child)
            bad |= check_sections(p, d->first_child);
    }
    if (verify && endpoint) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     HFLOGNO(01001)
                     "HrflowVerify on (%s line %d) and %s (%s line %d) in "
                     "one section: HrflowVerify puts mod_hrflow in front of "
                     "another handler, the application; an endpoint "
                     "(SetHandler hrflow-webhook, HrflowHandler) checks its "
                     "requests itself. Use one or the other",
                     verify->filename, verify->line_num, endpoint->directive,
                     endpoint->filename, endpoint->line_num);
        bad = 1;
    }
    return bad;
}

/* A gateway section's secret (given there or by its server). */
static int check_gateway(apr_pool_t *p, server_rec *s,
                         const hf_config_t *defaults,
                         ap_conf_vector_t *section)
{
    const hf_config_t *own = ap_get_module_config(section, &hrflow_module);
    const hf_config_t *cfg = own ? hf_config_merge(p, defaults, own)
                                 : defaults;
    core_dir_config *core = ap_get_core_module_config(section);
    const char *where = core && core->d ? core->d : "/";
    const char *err;

    if (!own || !hf_config_verify(own))
        return 0;
    if ((err = hf_config_check_endpoint(p, cfg))) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     HFLOGNO(01007) "%s (HrflowVerify on for %s, %s)", err,
                     where, hrflow_server_name(p, s));
        return 1;
    }
    if (hf_config_signature(cfg) == HF_SIG_OFF)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     HFLOGNO(01002)
                     "HrflowVerify on with HrflowSignature off for %s: "
                     "requests reach the application unverified",
                     where);
    return 0;
}

static int check_gateways(apr_pool_t *p, server_rec *s,
                          const hf_config_t *defaults,
                          apr_array_header_t *sections)
{
    int i, bad = 0;

    for (i = 0; sections && i < sections->nelts; i++)
        bad |= check_gateway(p, s, defaults,
                             APR_ARRAY_IDX(sections, i, ap_conf_vector_t *));
    return bad;
}

static int gateway_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp, server_rec *main_server)
{
    server_rec *s;
    int bad = check_sections(ptemp, ap_conftree);

    for (s = main_server; s; s = s->next) {
        core_server_config *sconf = ap_get_core_module_config(s->module_config);
        const hf_config_t *defaults =
            ap_get_module_config(s->lookup_defaults, &hrflow_module);
        bad |= check_gateway(ptemp, s, hf_config_create(ptemp),
                             s->lookup_defaults);
        bad |= check_gateways(ptemp, s, defaults, sconf->sec_url);
        bad |= check_gateways(ptemp, s, defaults, sconf->sec_dir);
    }
    return bad ? !OK : OK;
}

void hrflow_gateway_register_hooks(apr_pool_t *p)
{
    /* After mod_env's SetEnv (our variables win a clash) and before
     * mod_headers' RequestHeader (which may forward them to a proxy). */
    static const char *const after[] = {"mod_env.c", NULL};
    static const char *const before[] = {"mod_headers.c", NULL};

    ap_hook_fixups(gateway_fixups, after, before, APR_HOOK_MIDDLE);
    ap_hook_check_config(gateway_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_input_filter(REPLAY_FILTER, replay_filter, NULL,
                             AP_FTYPE_PROTOCOL);
}
