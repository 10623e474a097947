/*
 * hrflow-worker.c - a worker of the shared queue (SPEC 8), on any host:
 *
 *   hrflow-worker --config FILE [--check]
 *
 * FILE is in hrflow.cgi's syntax (read by the same code, with its checks:
 * a file others could change is refused) and holds HrflowQueue,
 * HrflowQueuePasswordFile, HrflowQueueName, HrflowQueueTimeout,
 * HrflowConcurrency, HrflowRetry, HrflowRetryDelay and HrflowHandler
 * lines.  The worker claims only events whose handler program is one of
 * its HrflowHandler programs, and runs its own line's argv for it.
 *
 * Log lines go to standard error (the journal under systemd).  SIGTERM:
 * no more claims; the handlers running finish and are recorded, then it
 * exits.  A second SIGTERM, or SIGINT, stops them at once (their leases
 * pass and other workers run them again).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"
#include "hf_queue.h"
#include "config.h"

static atomic_int stop_flag, drain_flag;
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;

    if (sig == SIGTERM && !atomic_load(&drain_flag)) {
        atomic_store(&drain_flag, 1);
    } else {
        atomic_store(&stop_flag, 1);
        if (wake_pipe[1] >= 0 && write(wake_pipe[1], "x", 1) < 0)
            (void)0;         /* the pipe is full: it is readable already */
    }
    errno = saved;
}

static const char *const level_names[] = {"emerg", "alert", "crit", "error",
                                          "warn", "notice", "info", "debug"};

static void log_write(void *ctx, int level, const char *msg)
{
    fprintf(stderr, "hrflow-worker[%ld]: [%s] %s\n", (long)getpid(),
            level >= 0 && level <= 7 ? level_names[level] : "?", msg);
}

static int log_wants(void *ctx, int level)
{
    return level <= *(const int *)ctx;
}

static int usage(FILE *f, int rc)
{
    fputs("usage: hrflow-worker --config FILE [--check] [--quiet]\n"
          "       hrflow-worker --version\n"
          "FILE holds HrflowQueue URL, HrflowHandler lines and optionally\n"
          "HrflowQueuePasswordFile, HrflowQueueName, HrflowQueueTimeout,\n"
          "HrflowConcurrency, HrflowRetry, HrflowRetryDelay.  --check reads\n"
          "it and exits; --quiet logs warnings and worse only.\n", f);
    return rc;
}

/* HrflowQueuePasswordFile's first line; a file others may read is
 * refused, as a secret file is. */
static const char *read_password(apr_pool_t *p, const char *path,
                                 const char **password)
{
    struct stat st;
    char *text;
    apr_size_t len;
    const char *err;

    if (stat(path, &st) != 0)
        return apr_psprintf(p, "HrflowQueuePasswordFile: cannot read %s: %s",
                            path, strerror(errno));
    if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP))
        return apr_psprintf(p, "HrflowQueuePasswordFile: %s is readable or "
                            "writable by other users (mode %04o); chmod 600 "
                            "or 640 it", path,
                            (unsigned)(st.st_mode & 07777));
    if ((err = hf_spool_read_file(p, path, &text, &len)))
        return apr_pstrcat(p, "HrflowQueuePasswordFile: ", err, NULL);
    text[strcspn(text, "\r\n")] = '\0';
    *password = text;
    return NULL;
}

static const char *read_config(apr_pool_t *p, const char *path,
                               const hf_logger_t *log, hf_config_t **cfg,
                               const char **password)
{
    const char *err = cgi_conffile_read(p, path, cfg, log, CGI_CONF_WORKER);

    *password = NULL;
    if (err)
        return err;
    if (!(*cfg)->queue)
        return apr_psprintf(p, "%s: no HrflowQueue: which queue to work on",
                            path);
    if (!(*cfg)->handlers || (*cfg)->handlers->nelts == 0)
        return apr_psprintf(p, "%s: no HrflowHandler: the worker claims only "
                            "events of its own handlers' programs", path);
    if ((*cfg)->queue_password_file)
        return read_password(p, (*cfg)->queue_password_file, password);
    return NULL;
}

static void catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int main(int argc, const char *const *argv)
{
    const char *config = NULL, *password, *err;
    int check = 0, level = HF_LOG_INFO, i, rc;
    hf_logger_t log = {log_write, &level, log_wants};
    hf_config_t *cfg;
    hf_worker_spec_t spec;
    apr_pool_t *p;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(argv[i], "--check"))
            check = 1;
        else if (!strcmp(argv[i], "--quiet"))
            level = HF_LOG_WARNING;
        else if (!strcmp(argv[i], "--version"))
            return printf("hrflow-worker (mod_hrflow) %s\n", PACKAGE_VERSION),
                   0;
        else if (!strcmp(argv[i], "--help"))
            return usage(stdout, 0);
        else
            return usage(stderr, 2);
    }
    if (!config)
        return usage(stderr, 2);
    apr_app_initialize(&argc, &argv, NULL);
    atexit(apr_terminate);
    apr_pool_create(&p, NULL);
    if ((err = read_config(p, config, &log, &cfg, &password))) {
        hf_log(&log, HF_LOG_ERR, p, HFLOGNO(00713) "%s",
               hf_log_escape(p, err));
        return 1;
    }
    if (check) {
        printf("%s: ok\n", config);
        return 0;
    }
    if (geteuid() == 0)
        hf_log(&log, HF_LOG_WARNING, p,
               HFLOGNO(00714) "running as root: handlers run as root too; "
               "run hrflow-worker as the user they should run as (User= in "
               "its systemd unit)");
    if (pipe(wake_pipe) != 0)
        wake_pipe[0] = wake_pipe[1] = -1;
    else {
        fcntl(wake_pipe[0], F_SETFD, FD_CLOEXEC);
        fcntl(wake_pipe[1], F_SETFD, FD_CLOEXEC);
        fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
    }
    catch_signals();
    memset(&spec, 0, sizeof spec);
    spec.queue.url = cfg->queue;
    spec.queue.password = password;
    spec.queue.name = hf_config_queue_name(cfg);
    spec.queue.timeout_ms = hf_config_queue_timeout_ms(cfg);
    spec.queue.app = "hrflow-worker";
    spec.handlers = cfg->handlers;
    spec.concurrency = hf_config_concurrency(cfg);
    spec.retry = hf_config_retry(cfg);
    spec.retry_delay = hf_config_retry_delay(cfg);
    spec.log = &log;
    spec.stop = &stop_flag;
    spec.wake_fd = wake_pipe[0];
    spec.drain = &drain_flag;
    rc = hf_worker_run(p, &spec);
    apr_pool_destroy(p);
    return rc == 0 ? 0 : 1;
}
