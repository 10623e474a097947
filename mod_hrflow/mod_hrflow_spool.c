/*
 * mod_hrflow_spool.c - durable mode in Apache: the spool folders, one
 * dispatcher process per spool, each request process's group committer, and
 * a mod_status section.  Fleet mode's worker is started the same way
 * (hrflow_helper_start).
 *
 * The dispatcher is started as mod_cgid starts its daemon: forked by the
 * parent in post_config, registered as an "other child" so that the parent
 * starts it again if it dies, and noted as a subprocess of the configuration
 * pool so that a restart or a stop ends it (TERM, then KILL after 3 s).  It
 * drops to the server's User like a worker child, and stops handlers it is
 * running when told to stop: those events stay in run/ and run again.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_core.h>
#include <ap_listen.h>
#include <ap_mpm.h>
#include <mpm_common.h>
#include <mod_status.h>
#include <unixd.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include "mod_hrflow.h"
#include "hf_target_queue.h"

APLOG_USE_MODULE(hrflow);

#define HRFLOW_DISPATCHER_NICE 19

typedef struct {
    hrflow_helper_t helper;      /* the dispatcher process */
    const char *dir;
    int concurrency, retry, retry_delay;
    const hf_queue_spec_t *queue;  /* store-and-forward: forwarded there */
    int refused;                 /* failed its checks at a restart: 503 */
} dispatcher_rec;

static apr_array_header_t *dispatchers;  /* dispatcher_rec *, one per spool */
static apr_hash_t *committers;           /* dir -> hf_committer_t *, per child */
/* Set by the stop signal's handler, read by the dispatcher's threads. */
static atomic_int stop_requested;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
               "the stop flag must be safe to set in a signal handler");
static int stop_pipe[2] = {-1, -1};

hf_committer_t *hrflow_spool_committer(const char *dir)
{
    return committers ? apr_hash_get(committers, dir, APR_HASH_KEY_STRING)
                      : NULL;
}

const char *hrflow_spool_check(apr_pool_t *p, const char *dir)
{
    char *parent = apr_pstrdup(p, dir), *slash = strrchr(parent, '/');
    const char *err;

    if (slash && slash != parent)
        *slash = '\0';
    if (access(dir, F_OK) != 0 && access(parent, W_OK) != 0)
        return apr_psprintf(p, "HrflowSpool: cannot create %s: %s is not "
                            "a writable directory", dir, parent);
    /* What post_config would refuse, said by configtest too. */
    err = hf_spool_inspect(p, dir, geteuid() == 0
                                       ? (int)ap_unixd_config.user_id : -1);
    return err ? apr_pstrcat(p, "HrflowSpool: ", err, NULL) : NULL;
}

/* ---- the dispatcher process -------------------------------------------- */

static void on_stop_signal(int sig)
{
    int saved = errno;

    stop_requested = 1;
    if (write(stop_pipe[1], "", 1) < 0) {
        /* already awake */
    }
    errno = saved;
}

static void log_to_server(void *ctx, int level, const char *msg)
{
    ap_log_error(APLOG_MARK, level, 0, ctx, "%s", msg);
}

static int server_wants(void *ctx, int level)
{
    return APLOG_IS_LEVEL((server_rec *)ctx, level);
}

/* The life of a helper process (the dispatcher, fleet mode's worker):
 * until h->run returns, then exits. */
static void helper_main(hrflow_helper_t *h, pid_t parent)
{
    hf_logger_t log = {log_to_server, h->server, server_wants};
    apr_pool_t *p;
    struct sigaction sa;
    sigset_t none;

    /* A session of its own, which every handler joins: if this process is
     * killed, the next dispatcher ends what is left of it (hf_dispatch). */
    setsid();
    /* Answering HrFlow comes first: handlers (which inherit this) run in
     * the CPU time that requests leave over. */
    setpriority(PRIO_PROCESS, 0, HRFLOW_DISPATCHER_NICE);
    /* What a dispatcher must not keep of the parent: its listening
     * sockets, duplicates per listener bucket included (mod_cgid's daemon
     * does the same). */
    ap_close_listeners();
    apr_pool_create(&p, NULL);
    if (ap_run_drop_privileges(p, h->server) != OK)
        _exit(1);
    /* For a parent killed with -9.  Only now: the kernel clears the
     * parent-death signal when the credentials change, as the drop just
     * did.  A parent that died before this call sent nothing: ask. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(0);
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        _exit(1);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);       /* the parent's graceful signal */
    sigaction(SIGWINCH, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (h->run(p, h->ctx, &log, &stop_requested, stop_pipe[0]) != 0) {
        /* It could not start (the spool cannot be read or locked): the
         * parent starts another at once, so wait a little first rather
         * than spin; a stop ends the wait. */
        int i;
        for (i = 0; i < 50 && !stop_requested; i++)
            apr_sleep(apr_time_from_msec(100));
        _exit(1);
    }
    _exit(0);
}

static void helper_maint(int reason, void *data, apr_wait_t status);

int hrflow_helper_start(hrflow_helper_t *h)
{
    pid_t parent = getpid();
    apr_status_t rv = apr_proc_fork(&h->proc, h->pool);

    if (rv == APR_INCHILD)
        helper_main(h, parent);         /* does not return */
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, h->server,
                     HFLOGNO(00201) "%s: cannot start the %s", h->what,
                     h->role);
        return -1;
    }
    apr_pool_note_subprocess(h->pool, &h->proc, APR_KILL_AFTER_TIMEOUT);
    apr_proc_other_child_register(&h->proc, helper_maint, h, NULL, h->pool);
    return 0;
}

static void helper_maint(int reason, void *data, apr_wait_t status)
{
    hrflow_helper_t *h = data;
    int state = AP_MPMQ_STOPPING;

    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        apr_proc_other_child_unregister(h);
        ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
        if (state == AP_MPMQ_STOPPING)
            break;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, h->server,
                     HFLOGNO(00202)
                     "%s: %s %ld died (status %d), starting it again",
                     h->what, h->role, (long)h->proc.pid, (int)status);
        hrflow_helper_start(h);
        break;
    case APR_OC_REASON_RESTART:
    case APR_OC_REASON_UNREGISTER:
        break;
    }
}

static int run_dispatcher(apr_pool_t *p, void *ctx, const hf_logger_t *log,
                          atomic_int *stop, int wake_fd)
{
    const dispatcher_rec *d = ctx;
    hf_dispatch_spec_t spec;

    spec.dir = d->dir;
    spec.concurrency = d->concurrency;
    spec.retry = d->retry;
    spec.retry_delay = d->retry_delay;
    spec.log = log;
    spec.stop = stop;
    spec.wake_fd = wake_fd;
    if (d->queue) {
        /* Store-and-forward: each event goes into the queue instead. */
        hf_queue_spec_t queue = *d->queue;
        queue.app = "hrflow-forwarder";
        return hf_dispatch_run_target(
            p, &spec, &hf_target_queue,
            hf_target_queue_create(p, &queue, d->concurrency));
    }
    return hf_dispatch_run(p, &spec);
}

/* ---- hooks -------------------------------------------------------------- */

/* One dispatcher_rec per distinct spool, from each server's settings. */
static void collect_spools(apr_pool_t *pconf, server_rec *main_server)
{
    server_rec *s;
    int i;

    dispatchers = apr_array_make(pconf, 2, sizeof(dispatcher_rec *));
    for (s = main_server; s; s = s->next) {
        const hf_config_t *c = hrflow_server_config(s);
        dispatcher_rec *d;
        for (i = 0; c->spool && i < dispatchers->nelts; i++)
            if (!strcmp(APR_ARRAY_IDX(dispatchers, i, dispatcher_rec *)->dir,
                        c->spool))
                break;
        if (!c->spool || i < dispatchers->nelts)
            continue;
        d = apr_pcalloc(pconf, sizeof *d);
        d->dir = c->spool;
        d->concurrency = hf_config_concurrency(c);
        d->retry = hf_config_retry(c);
        d->retry_delay = hf_config_retry_delay(c);
        d->queue = hrflow_queue_spec(s);
        d->helper.what = apr_pstrcat(pconf, "spool ", c->spool, NULL);
        d->helper.role = "dispatcher";
        d->helper.run = run_dispatcher;
        d->helper.ctx = d;
        d->helper.server = s;
        d->helper.pool = pconf;
        APR_ARRAY_PUSH(dispatchers, dispatcher_rec *) = d;
    }
}

static int spool_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                             apr_pool_t *ptemp, server_rec *main_server)
{
    int i, uid = -1, gid = -1;
    /* Generation 1 is the first start after the dry run. */
    int restart = ap_state_query(AP_SQ_CONFIG_GEN) > 1;

    collect_spools(pconf, main_server);
    /* httpd runs post_config twice at startup; the first is a dry run. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return OK;
    if (geteuid() == 0) {
        uid = (int)ap_unixd_config.user_id;
        gid = (int)ap_unixd_config.group_id;
    }
    for (i = 0; i < dispatchers->nelts; i++) {
        dispatcher_rec *d = APR_ARRAY_IDX(dispatchers, i, dispatcher_rec *);
        const char *err = hf_spool_prepare(ptemp, d->dir, uid, gid);
        if (err && restart) {
            /* The server user can plant what fails these checks, and a
             * restart signalled straight to the parent (no configtest
             * first) must not let it stop the whole server: this spool
             * alone answers 503 until it is repaired. */
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, main_server,
                         HFLOGNO(00203)
                         "HrflowSpool: %s; its endpoints answer 503 until "
                         "it is repaired and the server restarted", err);
            d->refused = 1;
            continue;
        }
        if (err) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                         HFLOGNO(00204) "HrflowSpool: %s", err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (hrflow_helper_start(&d->helper) != 0)
            return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static void spool_child_init(apr_pool_t *pchild, server_rec *s)
{
    int i;

    committers = apr_hash_make(pchild);
    for (i = 0; dispatchers && i < dispatchers->nelts; i++) {
        dispatcher_rec *d = APR_ARRAY_IDX(dispatchers, i, dispatcher_rec *);
        hf_committer_t *c;
        if (d->refused)
            continue;
        if (!(c = hf_committer_create(pchild, d->dir)))
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "spool %s: cannot "
                         "create a lock: this process answers 503", d->dir);
        else
            apr_hash_set(committers, d->dir, APR_HASH_KEY_STRING, c);
    }
}

static int spool_status(request_rec *r, int flags)
{
    static const char *const labels[] = {"Queued", "Running", "Retrying",
                                         "Failed"};
    static const char *const folders[] = {"new", "run", "retry", "failed"};
    int i, j;

    for (i = 0; dispatchers && i < dispatchers->nelts; i++) {
        dispatcher_rec *d = APR_ARRAY_IDX(dispatchers, i, dispatcher_rec *);
        if (!(flags & AP_STATUS_SHORT))
            ap_rprintf(r, "<hr /><h2>mod_hrflow spool %s</h2>\n<dl>\n",
                       ap_escape_html(r->pool, d->dir));
        for (j = 0; j < 4; j++) {
            int n = hf_spool_count(r->pool, d->dir, folders[j]);
            if (flags & AP_STATUS_SHORT)
                ap_rprintf(r, "Hrflow%s: %d\n", labels[j], n);
            else
                ap_rprintf(r, "<dt>%s: %d</dt>\n", labels[j], n);
        }
        if (hrflow_spool_committer(d->dir)) {
            apr_uint64_t groups, events;
            hf_committer_stats(hrflow_spool_committer(d->dir), &groups,
                               &events);
            /* This server process's share: group commit at work. */
            ap_rprintf(r, (flags & AP_STATUS_SHORT)
                              ? "HrflowProcessCommitted: %" APR_UINT64_T_FMT
                                "\nHrflowProcessCommitGroups: %"
                                APR_UINT64_T_FMT "\n"
                              : "<dt>This process: %" APR_UINT64_T_FMT
                                " events made durable in %" APR_UINT64_T_FMT
                                " group commits</dt>\n",
                       events, groups);
        }
        if (!(flags & AP_STATUS_SHORT))
            ap_rputs("</dl>\n", r);
    }
    return OK;
}

void hrflow_spool_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(spool_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(spool_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, spool_status, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
