/*
 * mod_hrflow.c - the Apache httpd 2.4 front end of the receiver.
 *
 * It turns directives into hf_config_t, hands an endpoint's request
 * (SetHandler hrflow-webhook) to the core (hf_receive, hf_deliver) with
 * its body read within HrflowMaxBody (mod_hrflow_body.c), and answers.  Startup checks that
 * need the whole configuration run in check_config, so that
 * `apachectl configtest` reports them.
 */
#include <grp.h>
#include <limits.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_main.h>
#include <http_protocol.h>
#include <http_request.h>
#include <unixd.h>
#include <ap_expr.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include "mod_hrflow.h"

#define HRFLOW_HANDLER "hrflow-webhook"

APLOG_USE_MODULE(hrflow);

/* ---- configuration ---------------------------------------------------- */

static void *create_dir_config(apr_pool_t *p, char *dir)
{
    return hf_config_create(p);
}

static void *merge_dir_config(apr_pool_t *p, void *base, void *add)
{
    return hf_config_merge(p, base, add);
}

/* The server config holds durable mode's settings (HF_SCOPE_SERVER), a
 * virtual host inheriting what it does not set. */
static void *create_server_config(apr_pool_t *p, server_rec *s)
{
    return hf_config_create(p);
}

const hf_config_t *hrflow_server_config(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &hrflow_module);
}

/* AP_MAX_ARGC of httpd's config.c, not in its headers. */
#define TAKE_ARGV_MAX 64

/* Every directive comes here, its arguments split by httpd (AP_INIT_TAKE1
 * or AP_INIT_TAKE_ARGV) and cmd->info pointing at its entry in the core's
 * table, which applies it. */
static const char *set_directive(cmd_parms *cmd, void *dcfg, int argc,
                                 char *const argv[])
{
    const hf_directive_t *d = cmd->info;
    hf_config_ctx_t ctx = {cmd->pool, ap_server_root};
    hf_config_t *cfg = d->scope == HF_SCOPE_SERVER
                           ? ap_get_module_config(cmd->server->module_config,
                                                  &hrflow_module)
                           : dcfg;

    /* httpd's TAKE_ARGV stops at 64 words and drops the rest unsaid: a
     * full argv may be a longer line cut short. */
    if (argc >= TAKE_ARGV_MAX)
        return apr_psprintf(cmd->pool, "%s: at most %d arguments", d->name,
                            TAKE_ARGV_MAX - 1);
    if (d->path_arg >= 0 && d->path_arg < argc) {
        /* A relative path is under ServerRoot, the way httpd's own
         * directives take it.  httpd's argv has no NULL after the last. */
        char **copy = apr_pcalloc(cmd->temp_pool,
                                  (apr_size_t)(argc + 1) * sizeof *argv);
        memcpy(copy, argv, (apr_size_t)argc * sizeof *argv);
        copy[d->path_arg] = ap_server_root_relative(cmd->pool,
                                                    argv[d->path_arg]);
        if (!copy[d->path_arg])
            return apr_psprintf(cmd->pool, "%s: '%s' is not a valid path",
                                d->name, argv[d->path_arg]);
        argv = copy;
    }
    return hf_config_apply(&ctx, cfg, d, argc, argv);
}

static const char *set_directive_take1(cmd_parms *cmd, void *dcfg,
                                       const char *arg)
{
    char *argv[2] = {(char *)arg, NULL};

    return set_directive(cmd, dcfg, 1, argv);
}

/* Server-wide directives are RSRC_CONF: httpd itself refuses them in a
 * <Location> or <Directory> ("HrflowSpool not allowed in <Location>
 * context"). */
#define WHERE(scope) \
    ((scope) == HF_SCOPE_SERVER ? RSRC_CONF : RSRC_CONF | ACCESS_CONF)
#define ENTRY(set)                                                             \
    ((void *)(apr_uintptr_t)&hf_config_directives[HF_DIRECTIVE_##set])
#define SETTER_TAKE1 set_directive_take1
#define SETTER_TAKE_ARGV set_directive
#define AS_COMMAND(name, set, how, min, max, scope, path, help) \
    AP_INIT_##how(name, SETTER_##how, ENTRY(set), WHERE(scope), help),
static const command_rec hrflow_cmds[] = {
    HF_DIRECTIVE_LIST(AS_COMMAND) {NULL}};
#undef AS_COMMAND

/* ---- startup checks --------------------------------------------------- */

/* Where each "SetHandler hrflow-webhook" stands in the config files. */
static void find_endpoints(apr_pool_t *p, const ap_directive_t *d,
                           apr_hash_t *found)
{
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "SetHandler") && d->args) {
            const char *args = d->args;
            char *word = ap_getword_conf(p, &args);
            if (!strcasecmp(word, HRFLOW_HANDLER))
                apr_hash_set(found,
                             apr_psprintf(p, "%s:%d", d->filename, d->line_num),
                             APR_HASH_KEY_STRING, "");
        }
        find_endpoints(p, d->first_child, found);
    }
}

static int is_endpoint(apr_pool_t *p, ap_conf_vector_t *section,
                       apr_hash_t *endpoints)
{
    core_dir_config *core = ap_get_core_module_config(section);
    const ap_expr_info_t *h = core ? core->expr_handler : NULL;

    return h && h->filename
           && apr_hash_get(endpoints,
                           apr_psprintf(p, "%s:%u", h->filename,
                                        h->line_number),
                           APR_HASH_KEY_STRING) != NULL;
}

/* The server's User, as the handlers will run: checked while configtest
 * still runs as root, who could run them all.  NULL when httpd does not
 * change users (not started as root): access() said it all. */
static const hf_user_t *handler_user(apr_pool_t *p)
{
    hf_user_t *u;
    gid_t groups[NGROUPS_MAX + 1];
    int n = NGROUPS_MAX + 1, i;
    long *kept;

    if (geteuid() != 0)
        return NULL;
    u = apr_pcalloc(p, sizeof *u);
    u->name = ap_unixd_config.user_name;
    u->uid = (long)ap_unixd_config.user_id;
    if (getgrouplist(u->name, ap_unixd_config.group_id, groups, &n) < 0) {
        groups[0] = ap_unixd_config.group_id;   /* too many: the primary */
        n = 1;
    }
    kept = apr_palloc(p, (apr_size_t)n * sizeof *kept);
    for (i = 0; i < n; i++)
        kept[i] = (long)groups[i];
    u->groups = kept;
    u->ngroups = n;
    return u;
}

/* Checks one section that holds SetHandler hrflow-webhook. */
static int check_endpoint(apr_pool_t *p, server_rec *s,
                          const hf_config_t *defaults,
                          ap_conf_vector_t *section)
{
    const hf_user_t *user = handler_user(p);
    core_dir_config *core = ap_get_core_module_config(section);
    /* A section with no Hrflow directive of its own has no config of
     * ours: it runs with the server's. */
    const hf_config_t *own = ap_get_module_config(section, &hrflow_module);
    const hf_config_t *cfg = hf_config_with_server(
        p, own ? hf_config_merge(p, defaults, own) : defaults,
        hrflow_server_config(s));
    const char *where = core->d ? core->d : s->server_hostname;
    const char *err = hf_config_check_endpoint(p, cfg);

    if (!err && user)
        err = hf_config_check_handlers(p, cfg, user);
    if (!err && cfg->queue)
        hrflow_queue_note_endpoint(s, cfg);   /* what its worker may run */
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     HFLOGNO(00101) "%s (endpoint %s, %s line %u)", err,
                     where ? where : "/", core->expr_handler->filename,
                     core->expr_handler->line_number);
        return -1;
    }
    if (hf_config_signature(cfg) == HF_SIG_OFF)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     HFLOGNO(00102)
                     "HrflowSignature off for endpoint %s: anyone who can "
                     "reach it can run its handlers",
                     where ? where : "/");
    return 0;
}

static int check_sections(apr_pool_t *p, server_rec *s,
                          const hf_config_t *defaults,
                          apr_array_header_t *sections, apr_hash_t *endpoints)
{
    int i, bad = 0;

    for (i = 0; sections && i < sections->nelts; i++) {
        ap_conf_vector_t *sec = APR_ARRAY_IDX(sections, i, ap_conf_vector_t *);
        if (is_endpoint(p, sec, endpoints))
            bad |= check_endpoint(p, s, defaults, sec);
    }
    return bad;
}

const char *hrflow_server_name(apr_pool_t *p, const server_rec *s)
{
    return s->defn_name ? apr_psprintf(p, "virtual host %s (%s line %u)",
                                       s->server_hostname, s->defn_name,
                                       s->defn_line_number)
                        : "the main server";
}

/* One spool has one dispatcher, so one set of durable settings: servers
 * that share a spool folder with different ones are refused, rather than
 * silently getting the first one's. */
/* Two names of one folder (a link above it) would start two dispatchers
 * on one spool, the second waiting forever for the first one's lock. */
static int same_folder_two_names(const char *a, const char *b)
{
    struct stat sa, sb;

    return strcmp(a, b) != 0 && stat(a, &sa) == 0 && stat(b, &sb) == 0
           && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int check_shared_spools(apr_pool_t *p, server_rec *main_server)
{
    server_rec *s, *t;

    for (s = main_server; s; s = s->next) {
        const hf_config_t *a = hrflow_server_config(s);
        for (t = s->next; a->spool && t; t = t->next) {
            const hf_config_t *b = hrflow_server_config(t);
            if (b->spool && same_folder_two_names(a->spool, b->spool)) {
                ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                             HFLOGNO(00108)
                             "HrflowSpool %s (%s) and HrflowSpool %s (%s) "
                             "are one folder: name it the same way in both",
                             a->spool, hrflow_server_name(p, s), b->spool,
                             hrflow_server_name(p, t));
                return 1;
            }
            const char *diff = b->spool && !strcmp(a->spool, b->spool)
                                   ? hf_config_server_conflict(p, a, b)
                                   : NULL;
            if (diff) {
                ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                             HFLOGNO(00103)
                             "HrflowSpool %s: %s and %s share it with "
                             "different settings (%s); one spool has one "
                             "dispatcher: give them the same values or each "
                             "its own HrflowSpool",
                             a->spool, hrflow_server_name(p, s),
                             hrflow_server_name(p, t), diff);
                return 1;
            }
        }
    }
    return 0;
}

static int hrflow_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                               apr_pool_t *ptemp, server_rec *main_server)
{
    apr_hash_t *endpoints = apr_hash_make(ptemp);
    server_rec *s;
    int bad = 0;

    find_endpoints(ptemp, ap_conftree, endpoints);
    bad = check_shared_spools(ptemp, main_server);
    for (s = main_server; s; s = s->next)
        bad |= hrflow_queue_check_server(pconf, ptemp, s) != 0;
    for (s = main_server; s; s = s->next) {
        core_server_config *sconf = ap_get_core_module_config(s->module_config);
        const hf_config_t *defaults =
            ap_get_module_config(s->lookup_defaults, &hrflow_module);
        const char *spool = hrflow_server_config(s)->spool;
        /* At a restart the spool's post_config refuses a bad spool on its
         * own, keeping the server up: see spool_post_config. */
        if (spool && ap_state_query(AP_SQ_CONFIG_GEN) <= 1) {
            const char *err = hrflow_spool_check(ptemp, spool);
            if (err) {
                ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                             HFLOGNO(00104) "%s", err);
                bad = 1;
            }
        }
        if (is_endpoint(ptemp, s->lookup_defaults, endpoints))
            bad |= check_endpoint(ptemp, s, hf_config_create(ptemp),
                                  s->lookup_defaults);
        bad |= check_sections(ptemp, s, defaults, sconf->sec_url, endpoints);
        bad |= check_sections(ptemp, s, defaults, sconf->sec_dir, endpoints);
    }
    return bad ? !OK : OK;
}

/* Once per start and restart, not in the dry run that precedes the first
 * start (nor in configtest, which stops before post_config). */
static int hrflow_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                              apr_pool_t *ptemp, server_rec *s)
{
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return OK;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 HFLOGNO(00107) "mod_hrflow %s configured (generation %d)",
                 hf_version, ap_state_query(AP_SQ_CONFIG_GEN));
    return OK;
}

/* ---- the request ------------------------------------------------------ */

int hrflow_is_endpoint(const request_rec *r)
{
    return r->handler && !strcmp(r->handler, HRFLOW_HANDLER);
}

static void accept_into_spool(request_rec *r, const hf_config_t *cfg,
                              hf_outcome_t *out, const hf_logger_t *log)
{
    hf_committer_t *c = hrflow_spool_committer(cfg->spool);

    if (!c) {
        out->rc = HF_E_SPOOL;
        out->error = "spool_unavailable";
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      HFLOGNO(00105)
                      "spool %s is not ready in this process", cfg->spool);
        return;
    }
    hf_commit_accept(r->pool, cfg, c, out, log);
}

/* Durable mode and fleet mode: the events are stored (the spool, else the
 * queue: SPEC 6 and 8), for a 202. */
static void accept_events(request_rec *r, const hf_config_t *cfg,
                          hf_outcome_t *out, const hf_logger_t *log)
{
    if (cfg->spool)
        accept_into_spool(r, cfg, out, log);
    else
        hrflow_queue_accept(r, cfg, out, log);
    /* The access log's HRFLOW_* variables, as in synchronous mode: the
     * first event's (no try made yet, so no HRFLOW_ATTEMPT). */
    if (out->events->nelts > 0) {
        hf_event_t *first = APR_ARRAY_IDX(out->events, 0, hf_event_t *);
        hf_batch_t batch = {out->events->nelts, out->verified, 0};
        int dropped;
        first->vars = hf_env_build(r->pool, first, &batch, &dropped);
        apr_table_unset(first->vars, "HRFLOW_ATTEMPT");
    }
}

/* Whether the client has closed its connection: a batch stops starting
 * handlers for nobody.  The whole body has been read, so the socket only
 * shows the client's end (a client that only shuts down its sending side
 * counts as gone too: HTTP clients do not do that and wait). */
static int client_gone(void *ctx)
{
    request_rec *r = ctx;
    apr_socket_t *sock = ap_get_conn_socket(r->connection);
    apr_os_sock_t fd;
    struct pollfd pfd;

    if (r->connection->aborted)
        return 1;
    if (!sock || apr_os_sock_get(&fd, sock) != APR_SUCCESS)
        return 0;
    pfd.fd = fd;
    pfd.revents = 0;
#ifdef POLLRDHUP
    pfd.events = POLLRDHUP;
    return poll(&pfd, 1, 0) == 1
           && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
#else
    pfd.events = 0;
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
#endif
}

/* A body over LimitRequestBody in chunks, or a broken chunk, is answered by
 * httpd from inside its input filter, with an HTML page: on an endpoint,
 * this error filter puts the JSON answer in its place. */
#define JSON_ERROR_FILTER "HRFLOW_JSON_ERROR"

static apr_status_t json_error_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    hf_outcome_t out;
    apr_bucket *b, *next;

    memset(&out, 0, sizeof out);
    out.rc = r->status == HTTP_REQUEST_ENTITY_TOO_LARGE ? HF_E_TOO_LARGE
                                                        : HF_E_MALFORMED;
    out.error = out.rc == HF_E_TOO_LARGE ? "body_too_large" : "unreadable_body";
    ap_set_content_type(r, "application/json");
    for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb); b = next) {
        next = APR_BUCKET_NEXT(b);
        if (APR_BUCKET_IS_EOS(b)) {
            const char *json = hf_receive_response_body(r->pool, &out);
            APR_BUCKET_INSERT_BEFORE(
                b, apr_bucket_pool_create(json, strlen(json), r->pool,
                                          f->c->bucket_alloc));
            ap_remove_output_filter(f);
        }
        else if (!APR_BUCKET_IS_METADATA(b))
            apr_bucket_delete(b);
    }
    return ap_pass_brigade(f->next, bb);
}

static void hrflow_insert_error_filter(request_rec *r)
{
    if ((hrflow_is_endpoint(r) || hrflow_gateway_pending(r))
        && (r->status == HTTP_REQUEST_ENTITY_TOO_LARGE
            || r->status == HTTP_BAD_REQUEST))
        ap_add_output_filter(JSON_ERROR_FILTER, NULL, r, r->connection);
}

static int hrflow_handler(request_rec *r)
{
    const hf_config_t *cfg;
    hf_request_t req;
    hf_outcome_t out;
    hf_logger_t log;
    int rc;

    if (!hrflow_is_endpoint(r))
        return DECLINED;
    cfg = hf_config_with_server(
        r->pool, ap_get_module_config(r->per_dir_config, &hrflow_module),
        hrflow_server_config(r->server));
    hrflow_request_init(r, &req, &log);
    if (r->method_number == M_POST
        && (rc = hrflow_read_body(r, r->input_filters,
                                  hf_config_max_body(cfg), &req)) != OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      HFLOGNO(00106) "cannot read the body (%d)", rc);
        return rc;
    }
    hf_receive(r->pool, cfg, &req, &out);
    if (out.rc == HF_OK && (cfg->spool || cfg->queue))
        accept_events(r, cfg, &out, &log);
    else if (out.rc == HF_OK)
        hf_deliver_watched(r->pool, cfg, &out, &log, client_gone, r);
    hf_receive_log_refusal(r->pool, cfg, &out, &log);
    if (out.events->nelts > 0) {
        const hf_event_t *first = APR_ARRAY_IDX(out.events, 0, hf_event_t *);
        if (first->vars)
            apr_table_overlap(r->subprocess_env, first->vars,
                              APR_OVERLAP_TABLES_SET);
    }
    return hrflow_respond(r, &out);
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_check_config(hrflow_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(hrflow_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(hrflow_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(hrflow_insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    ap_register_output_filter(JSON_ERROR_FILTER, json_error_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
    hrflow_spool_register_hooks(p);
    hrflow_queue_register_hooks(p);
    hrflow_gateway_register_hooks(p);
}

module AP_MODULE_DECLARE_DATA hrflow_module = {
    STANDARD20_MODULE_STUFF,
    create_dir_config,
    merge_dir_config,
    create_server_config,
    merge_dir_config,   /* hf_config_merge: "add if set, else base" too */
    hrflow_cmds,
    register_hooks,
    AP_MODULE_FLAG_NONE};
