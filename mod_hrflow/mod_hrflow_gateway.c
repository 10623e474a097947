/*
 * mod_hrflow_gateway.c - gateway mode (SPEC 9): `HrflowVerify on` in a
 * section whose content handler is another module's (php-fpm through
 * mod_proxy_fcgi, mod_proxy_http, mod_cgid, a static file).
 *
 * The check runs first in the fixups phase: after the section's access
 * control (Require, mod_auth_*), whose refusals then cost no body read,
 * and before any other module's fixups, some of which read the body
 * (ModSecurity) and hand it on themselves: what they hand on must be the
 * verified bytes.  It reads the body from the protocol's filters, as the
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
 * - the first event's HRFLOW_* variables in r->subprocess_env, set by a
 *   later fixups hook: after mod_env's SetEnv, before mod_headers'
 *   RequestHeader, which may forward them.
 *
 * The body is read once.  A redirect or subrequest of a verified request
 * that lands in a gateway section with other rules is checked again,
 * against those rules, on the bytes as they came.  A subrequest into a
 * gateway section whose request was not verified is refused (it has no
 * body to check).
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
    hf_request_t req;            /* as it came: method, type, body */
    const hf_config_t *cfg;      /* the rules it was checked against */
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
static void let_through(request_rec *r, const hf_config_t *cfg,
                        const hf_request_t *req, const hf_signature_t *sig,
                        const hf_outcome_t *out)
{
    gateway_pass_t *pass = apr_pcalloc(r->pool, sizeof *pass);

    pass->req = *req;
    pass->cfg = cfg;
    pass->vars = pass_vars(r, out);
    ap_set_module_config(client_request(r)->request_config, &hrflow_module,
                         pass);
    if (sig->payload) {
        replace_body(r, (const char *)sig->payload, sig->payload_len);
        apr_table_setn(r->headers_in, "Content-Type", "application/json");
        apr_table_unset(r->headers_in, "Content-Encoding");
    }
    else
        replace_body(r, req->body, req->body_len);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  HFLOGNO(01005) "verified (%s): %d events, %" APR_SIZE_T_FMT
                  " bytes passed to the handler",
                  out->verified ? "signed" : "unsigned", out->events->nelts,
                  sig->payload ? sig->payload_len : req->body_len);
}

/* A refusal: the endpoint's answer, or for a subrequest (whose answer
 * nobody reads) its status. */
static int refuse(request_rec *r, const hf_outcome_t *out)
{
    if (r->main)
        return hf_receive_outcome_http_status(out);
    hrflow_respond(r, out);
    return DONE;
}

static int refuse_unread(request_rec *r, int rc)
{
    hf_outcome_t out;

    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  HFLOGNO(01003) "cannot read the body (%d)", rc);
    if (rc != HTTP_BAD_REQUEST && rc != HTTP_INTERNAL_SERVER_ERROR)
        return rc;
    memset(&out, 0, sizeof out);
    out.rc = rc == HTTP_BAD_REQUEST ? HF_E_MALFORMED : HF_E_CONFIG;
    out.error = rc == HTTP_BAD_REQUEST ? "unreadable_body"
                                       : "server_misconfigured";
    r->connection->keepalive = AP_CONN_CLOSE;
    return refuse(r, &out);
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
                                  hf_config_max_body(cfg), &req)) != OK)
        return refuse_unread(r, rc);
    hf_receive_text(r->pool, cfg, &req, &out, &sig);
    if (out.rc != HF_OK) {
        hf_receive_log_refusal(r->pool, cfg, &out, &log);
        return refuse(r, &out);
    }
    let_through(r, cfg, &req, &sig, &out);
    return OK;
}

static int same_secrets(const apr_array_header_t *a,
                        const apr_array_header_t *b)
{
    int i;

    if (a == b)
        return 1;
    if (!a || !b || a->nelts != b->nelts)
        return 0;
    for (i = 0; i < a->nelts; i++)
        if (strcmp(APR_ARRAY_IDX(a, i, const char *),
                   APR_ARRAY_IDX(b, i, const char *)) != 0)
            return 0;
    return 1;
}

/* Whether two gateway sections check a request the same way. */
static int same_rules(const hf_config_t *a, const hf_config_t *b)
{
    return same_secrets(a->secrets, b->secrets)
           && hf_config_signature(a) == hf_config_signature(b)
           && !a->signature_header == !b->signature_header
           && (!a->signature_header
               || !strcasecmp(a->signature_header, b->signature_header))
           && hf_config_max_body(a) == hf_config_max_body(b)
           && hf_config_max_events(a) == hf_config_max_events(b);
}

/* A verified request redirected (or looked up) into a gateway section of
 * other rules: checked again against them, on the bytes as they came. */
static int recheck(request_rec *r, const hf_config_t *cfg,
                   gateway_pass_t *pass)
{
    hf_logger_t log;
    hf_request_t ignored;
    hf_outcome_t out;
    hf_signature_t sig;

    if (same_rules(cfg, pass->cfg))
        return OK;
    hrflow_request_init(r, &ignored, &log);
    hf_receive_text(r->pool, cfg, &pass->req, &out, &sig);
    if (out.rc != HF_OK) {
        hf_receive_log_refusal(r->pool, cfg, &out, &log);
        return refuse(r, &out);
    }
    pass->cfg = cfg;
    pass->vars = pass_vars(r, &out);
    return OK;
}

static const hf_config_t *gateway_config(request_rec *r)
{
    const hf_config_t *cfg = ap_get_module_config(r->per_dir_config,
                                                  &hrflow_module);

    /* An endpoint checks its requests itself. */
    return cfg && hf_config_verify(cfg) && !hrflow_is_endpoint(r) ? cfg
                                                                   : NULL;
}

static int gateway_check(request_rec *r)
{
    const hf_config_t *cfg = gateway_config(r);
    gateway_pass_t *pass = passed(r);

    if (!cfg)
        return DECLINED;
    if (pass)
        return recheck(r, cfg, pass);
    if (r->main) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      HFLOGNO(01006) "subrequest for %s refused: its "
                      "request was not verified (HrflowVerify on)",
                      r->uri);
        return HTTP_UNAUTHORIZED;
    }
    return verify(r, cfg);
}

static int gateway_vars(request_rec *r)
{
    gateway_pass_t *pass = passed(r);

    if (!pass)
        return DECLINED;
    apr_table_overlap(r->subprocess_env, pass->vars, APR_OVERLAP_TABLES_SET);
    return OK;
}

int hrflow_gateway_pending(request_rec *r)
{
    return gateway_config(r) && !passed(r);
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

/* Whether the plain (not regex) section outer holds inner: its path is a
 * prefix of inner's, at a '/'. */
static int encloses(const core_dir_config *outer, const core_dir_config *inner)
{
    size_t n;

    if (!outer || !inner || outer->r || inner->r || !outer->d || !inner->d)
        return 0;
    n = strlen(outer->d);
    return !strncmp(outer->d, inner->d, n)
           && ((n && outer->d[n - 1] == '/') || inner->d[n] == '\0'
               || inner->d[n] == '/');
}

/* Section i of a server's <Location>s (or <Directory>s) as a request sees
 * it, as near as configtest can tell: the server's defaults, then the
 * sections before it that hold it, then its own. */
static const hf_config_t *merged(apr_pool_t *p, const hf_config_t *defaults,
                                 apr_array_header_t *sections, int i)
{
    ap_conf_vector_t *self = APR_ARRAY_IDX(sections, i, ap_conf_vector_t *);
    const hf_config_t *cfg = defaults;
    int j;

    for (j = 0; j <= i; j++) {
        ap_conf_vector_t *sec = APR_ARRAY_IDX(sections, j, ap_conf_vector_t *);
        const hf_config_t *own = ap_get_module_config(sec, &hrflow_module);
        if (own && (j == i || encloses(ap_get_core_module_config(sec),
                                       ap_get_core_module_config(self))))
            cfg = hf_config_merge(p, cfg, own);
    }
    return cfg;
}

static int has_secret(const hf_config_t *cfg)
{
    return cfg && cfg->secrets && cfg->secrets->nelts > 0;
}

/* Whether any section of the server names a secret. */
static int any_secret(const server_rec *s)
{
    core_server_config *sconf = ap_get_core_module_config(s->module_config);
    apr_array_header_t *lists[2] = {sconf->sec_url, sconf->sec_dir};
    int i, k;

    if (has_secret(ap_get_module_config(s->lookup_defaults, &hrflow_module)))
        return 1;
    for (k = 0; k < 2; k++)
        for (i = 0; lists[k] && i < lists[k]->nelts; i++)
            if (has_secret(ap_get_module_config(
                    APR_ARRAY_IDX(lists[k], i, ap_conf_vector_t *),
                    &hrflow_module)))
                return 1;
    return 0;
}

/* A gateway section's secret, given there, around it or by its server:
 * none anywhere fails configtest (HF01007); none that configtest can tie
 * to it (a secret in a <LocationMatch>, or a <Directory> around a
 * <Location>) is a warning, the request answering 500 if none applies. */
static int check_gateway(apr_pool_t *p, server_rec *s,
                         ap_conf_vector_t *section, const hf_config_t *cfg)
{
    const hf_config_t *own = ap_get_module_config(section, &hrflow_module);
    core_dir_config *core = ap_get_core_module_config(section);
    const char *where = core && core->d ? core->d : "/";
    const char *err;

    if (!own || !hf_config_verify(own))
        return 0;
    if ((err = hf_config_check_endpoint(p, cfg)) && !any_secret(s)) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     HFLOGNO(01007) "%s (HrflowVerify on for %s, %s)", err,
                     where, hrflow_server_name(p, s));
        return 1;
    }
    if (err)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     HFLOGNO(01009) "HrflowVerify on for %s: no secret in "
                     "it or the sections that hold it; its requests answer "
                     "500 unless another section gives one",
                     where);
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
        bad |= check_gateway(p, s,
                             APR_ARRAY_IDX(sections, i, ap_conf_vector_t *),
                             merged(p, defaults, sections, i));
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
        bad |= check_gateway(ptemp, s, s->lookup_defaults, defaults);
        bad |= check_gateways(ptemp, s, defaults, sconf->sec_url);
        bad |= check_gateways(ptemp, s, defaults, sconf->sec_dir);
    }
    return bad ? !OK : OK;
}

void hrflow_gateway_register_hooks(apr_pool_t *p)
{
    /* The check before every other fixups hook, ModSecurity's (which
     * reads the body) too; the variables after mod_env's SetEnv (ours win
     * a clash) and before mod_headers' RequestHeader (which may forward
     * them to a proxy). */
    static const char *const before_all[] = {"mod_security2.c", NULL};
    static const char *const after_env[] = {"mod_env.c", NULL};
    static const char *const before_headers[] = {"mod_headers.c", NULL};

    ap_hook_fixups(gateway_check, NULL, before_all, APR_HOOK_REALLY_FIRST);
    ap_hook_fixups(gateway_vars, after_env, before_headers, APR_HOOK_MIDDLE);
    ap_hook_check_config(gateway_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_input_filter(REPLAY_FILTER, replay_filter, NULL,
                             AP_FTYPE_PROTOCOL);
}
