/*
 * spawn_bench.c - what starting a handler costs, three ways, from a process
 * shaped like an httpd event-MPM child (worker threads, a large heap):
 *
 *   fork      fork + exec + wait, as apr_proc_create does
 *   spawn     hf_run: posix_spawn (no page-table copy), pipes, supervision
 *   daemon    a helper forked at startup runs hf_run on request over a
 *             socketpair, as mod_cgid's daemon does
 *
 *   spawn_bench [RUNS] [HEAP_MB] [THREADS]
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <apr_general.h>
#include "hrflow.h"

static const char *argv_true[] = {"/bin/true", NULL};
static const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
static const char input[] = "{\"type\":\"profile.parsing.success\"}";

static void *idle_worker(void *arg)
{
    pause();
    return arg;
}

static int run_fork(apr_pool_t *p)
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        execve(argv_true[0], (char *const *)argv_true, (char *const *)envp);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int run_spawn(apr_pool_t *p)
{
    hf_run_spec_t spec = {argv_true, envp, input, sizeof input - 1, 10, 4096,
                          NULL, 0};
    hf_run_result_t res;

    hf_run(p, &spec, &res);
    return hf_run_succeeded(&res) ? 0 : -1;
}

static int daemon_fd = -1;

static void daemon_loop(int fd)
{
    apr_pool_t *p;
    char req;

    apr_pool_create(&p, NULL);
    while (read(fd, &req, 1) == 1) {
        char ok = run_spawn(p) == 0 ? 'y' : 'n';
        apr_pool_clear(p);
        if (write(fd, &ok, 1) != 1)
            break;
    }
    _exit(0);
}

static int run_daemon(apr_pool_t *p)
{
    char req = 'r', ok = 'n';

    if (write(daemon_fd, &req, 1) != 1 || read(daemon_fd, &ok, 1) != 1)
        return -1;
    return ok == 'y' ? 0 : -1;
}

static double measure(const char *name, int (*fn)(apr_pool_t *), int runs)
{
    apr_pool_t *p;
    apr_time_t start = apr_time_now();
    int i, bad = 0;
    double us;

    apr_pool_create(&p, NULL);
    for (i = 0; i < runs; i++) {
        bad += fn(p) != 0;
        apr_pool_clear(p);
    }
    us = (double)(apr_time_now() - start) / runs;
    printf("%-7s %8.1f us/handler %9.0f handlers/s  failures %d\n", name, us,
           1e6 / us, bad);
    apr_pool_destroy(p);
    return us;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 1000;
    size_t heap_mb = argc > 2 ? (size_t)atoi(argv[2]) : 256;
    int threads = argc > 3 ? atoi(argv[3]) : 25, i, sv[2];
    char *heap;
    double f, s, d;

    apr_initialize();
    signal(SIGPIPE, SIG_IGN);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    if (fork() == 0) {        /* the daemon: forked small, before the heap */
        close(sv[0]);
        daemon_loop(sv[1]);
    }
    close(sv[1]);
    daemon_fd = sv[0];
    heap = malloc(heap_mb << 20);
    memset(heap, 1, heap_mb << 20);   /* resident, as a busy child's is */
    for (i = 0; i < threads; i++) {
        pthread_t t;
        pthread_create(&t, NULL, idle_worker, NULL);
    }
    printf("%d runs of /bin/true from a process with %zu MiB resident and "
           "%d threads\n", runs, heap_mb, threads);
    f = measure("fork", run_fork, runs);
    s = measure("spawn", run_spawn, runs);
    d = measure("daemon", run_daemon, runs);
    printf("ratios: fork/spawn %.2f, daemon/spawn %.2f\n", f / s, d / s);
    close(daemon_fd);
    free(heap);
    return 0;
}
