/*
 * hf_run.c - running one handler (SPEC section 4).
 *
 * posix_spawn, not fork: glibc's posix_spawn shares the parent's memory until
 * exec (CLONE_VM|CLONE_VFORK), so its cost does not grow with the size of a
 * threaded httpd child, and nothing runs in the child but the exec.  The
 * handler gets no shell, a clean environment, its own process group (so a
 * timeout kills it and everything it started), the program's directory as
 * working directory, and no descriptor of ours beyond 0, 1 and 2.
 *
 * A handler that exits without reading its input makes our write fail with
 * EPIPE, and raise SIGPIPE: every process that runs handlers ignores that
 * signal (httpd's MPMs in parent and children, hrflow.cgi's main, the
 * dispatcher), so a caller must too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <apr_strings.h>
#include "hrflow.h"

typedef struct {
    pid_t pid;
    int in_fd;            /* our end of the handler's stdin, or -1 */
    int out_fd;           /* our end of its stdout+stderr, or -1 */
    int pid_fd;           /* readable when it exits, or -1 */
    apr_size_t in_done;
    int reaped;
    int status;
} child_t;

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static const char *program_dir(apr_pool_t *p, const char *program)
{
    const char *slash = strrchr(program, '/');

    if (!slash)
        return ".";
    if (slash == program)
        return "/";
    return apr_pstrmemdup(p, program, (apr_size_t)(slash - program));
}

/* Set in the dispatcher: its handlers die with it (see fork_tied). */
static int tied_to_us;

void hf_run_die_with_us(void)
{
    tied_to_us = 1;
}

/* What the child of clone_tied needs; it shares our memory until exec. */
typedef struct {
    const hf_run_spec_t *spec;
    const char *dir;
    int in_fd, out_fd, report_fd;
    pid_t parent;
} tied_t;

#define TIED_STACK (64 * 1024)

/* The child's side: only system calls, on its own stack, with every
 * signal blocked until each handler is reset (it runs in our memory: one
 * of our handlers running here would act on it).  Not instrumented: its
 * frames live on a stack that AddressSanitizer does not know. */
__attribute__((no_sanitize_address))
static int tied_child(void *arg)
{
    const tied_t *t = arg;
    struct sigaction dfl;
    sigset_t none;
    int sig, err = 0;

    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != t->parent)
        _exit(127);                     /* it died before we could ask */
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(t->in_fd, 0) < 0 || dup2(t->out_fd, 1) < 0
        || dup2(t->out_fd, 2) < 0 || chdir(t->dir) != 0)
        err = errno;
    if (!err) {
        int fd;
        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
            for (fd = 3; fd < 1024; fd++)
                fcntl(fd, F_SETFD, FD_CLOEXEC);
        execve(t->spec->argv[0], (char *const *)t->spec->argv,
               (char *const *)t->spec->envp);
        err = errno;
    }
    if (write(t->report_fd, &err, sizeof err) < 0) {
        /* nothing more to do */
    }
    _exit(127);
}

/* Starts a handler for a process whose handlers must not outlive it:
 * posix_spawn cannot set a parent-death signal, so this does what glibc's
 * posix_spawn does, with that step added: clone with CLONE_VM|CLONE_VFORK
 * (no copy of our page tables, so its cost does not grow with the
 * dispatcher's memory; we wait until the child has called exec).  The
 * handler leads its own process group and is killed when this thread's
 * process dies; a failed exec is reported through a pipe (also where
 * CLONE_VM is not honoured, as under valgrind, which forks).  0, or an
 * errno value. */
static int fork_tied(const hf_run_spec_t *spec, const char *dir, int in_fd,
                     int out_fd, pid_t *pid)
{
    tied_t t = {spec, dir, in_fd, out_fd, -1, getpid()};
    int report[2], err = 0;
    sigset_t all, old;
    char *stack;
    ssize_t n;

    if (pipe2(report, O_CLOEXEC) != 0)
        return errno;
    stack = mmap(NULL, TIED_STACK, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        err = errno;
        close(report[0]);
        close(report[1]);
        return err;
    }
    t.report_fd = report[1];
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    *pid = clone(tied_child, stack + TIED_STACK,
                 CLONE_VM | CLONE_VFORK | SIGCHLD, &t);
    if (*pid < 0)
        err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, TIED_STACK);
    close(report[1]);
    if (*pid < 0) {
        close(report[0]);
        return err;
    }
    setpgid(*pid, *pid);                /* whichever runs first */
    while ((n = read(report[0], &err, sizeof err)) < 0 && errno == EINTR)
        ;
    close(report[0]);
    if (n == (ssize_t)sizeof err && err) {
        waitpid(*pid, NULL, 0);
        return err;
    }
    return 0;
}

ssize_t hf_run_read_head(const char *path, char *buf, apr_size_t size)
{
    char proc[64];
    struct stat st;
    ssize_t n = -1;
    int fd = open(path, O_PATH | O_CLOEXEC), rd;

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        /* The very file the name led to, not the name again. */
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        rd = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (rd >= 0) {
            n = read(rd, buf, size);
            close(rd);
        }
    }
    close(fd);
    return n;
}

const char *hf_run_check_crlf(apr_pool_t *p, const char *program)
{
    char head[256];     /* the kernel reads no more of a "#!" line */
    const char *nl;
    ssize_t n = hf_run_read_head(program, head, sizeof head);

    if (n < 3 || head[0] != '#' || head[1] != '!')
        return NULL;
    nl = memchr(head, '\n', (size_t)n);
    if (!nl || nl[-1] != '\r')
        return NULL;
    return apr_psprintf(p, "cannot run %s: it has CRLF line endings (its "
                        "first line \"#!...\\r\" names an interpreter "
                        "whose name ends in a carriage return); convert it "
                        "to LF line endings, e.g. with dos2unix", program);
}

/* Why spawning program failed with err: ENOENT for a file that exists is
 * most often a script saved with CRLF line endings. */
static const char *spawn_error(apr_pool_t *p, const char *program, int err)
{
    const char *crlf = err == ENOENT ? hf_run_check_crlf(p, program) : NULL;

    return crlf ? crlf : apr_psprintf(p, "cannot run %s: %s", program,
                                      strerror(err));
}

static int spawn(apr_pool_t *p, const hf_run_spec_t *spec, child_t *c,
                 const char **error)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int in[2], out[2], rc;

    /* posix_spawn reports a failed exec only where the C library can (glibc
     * does, valgrind's emulation does not): ask first, for a clear error. */
    if (access(spec->argv[0], X_OK) != 0) {
        *error = apr_psprintf(p, "cannot run %s: %s", spec->argv[0],
                              strerror(errno));
        return -1;
    }
    if (pipe2(in, O_CLOEXEC) != 0)
        return *error = "cannot create a pipe", -1;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return *error = "cannot create a pipe", -1;
    }
    if (tied_to_us) {
        rc = fork_tied(spec, program_dir(p, spec->argv[0]), in[0], out[1],
                       &c->pid);
        goto spawned;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP
    posix_spawn_file_actions_addchdir_np(&fa, program_dir(p, spec->argv[0]));
#endif
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);   /* httpd threads block some */
    posix_spawnattr_setsigdefault(&attr, &all); /* and ignore SIGPIPE */
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK
                                        | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&c->pid, spec->argv[0], &fa, &attr,
                     (char *const *)spec->argv, (char *const *)spec->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
spawned:
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        *error = spawn_error(p, spec->argv[0], rc);
        return -1;
    }
    c->in_fd = in[1];
    c->out_fd = out[0];
    fcntl(c->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
#if defined(SYS_pidfd_open)
    c->pid_fd = (int)syscall(SYS_pidfd_open, c->pid, 0);
#else
    c->pid_fd = -1;
#endif
    return 0;
}

static void try_reap(child_t *c)
{
    if (!c->reaped && waitpid(c->pid, &c->status, WNOHANG) == c->pid)
        c->reaped = 1;
}

static void feed_input(const hf_run_spec_t *spec, child_t *c)
{
    while (c->in_done < spec->input_len) {
        ssize_t n = write(c->in_fd, spec->input + c->in_done,
                          spec->input_len - c->in_done);
        if (n > 0) {
            c->in_done += (apr_size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        break;  /* EPIPE: the handler does not read its input; fine */
    }
    close_fd(&c->in_fd);
}

/* Reads what is there; keeps output_max bytes, counts the rest. */
static void drain_output(const hf_run_spec_t *spec, child_t *c,
                         hf_run_result_t *res)
{
    char buf[4096];

    for (;;) {
        ssize_t n = read(c->out_fd, buf, sizeof buf);
        if (n > 0) {
            apr_size_t keep = spec->output_max - res->output_len;
            if (keep > (apr_size_t)n)
                keep = (apr_size_t)n;
            memcpy(res->output + res->output_len, buf, keep);
            res->output_len += keep;
            res->output_dropped += (apr_size_t)n - keep;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN)
            close_fd(&c->out_fd);
        return;
    }
}

/* TERM the whole group, give it HF_KILL_GRACE_MS, then KILL it. */
static void kill_group(child_t *c)
{
    apr_interval_time_t wait = 10000, waited = 0;

    kill(-c->pid, SIGTERM);
    while (waited < HF_KILL_GRACE_MS * 1000) {
        try_reap(c);
        if (c->reaped && kill(-c->pid, 0) != 0)
            return;   /* leader reaped, nobody left in the group */
        apr_sleep(wait);
        waited += wait;
        wait = wait * 2 > 200000 ? 200000 : wait * 2;
    }
    kill(-c->pid, SIGKILL);
    if (!c->reaped && waitpid(c->pid, &c->status, 0) == c->pid)
        c->reaped = 1;
}

/* Waits for exit, feeding input and collecting output, until the deadline. */
static void supervise(const hf_run_spec_t *spec, child_t *c,
                      hf_run_result_t *res, apr_time_t deadline)
{
    for (;;) {
        struct pollfd fds[3];
        int nfds = 0, wait_ms;
        apr_time_t now;

        try_reap(c);
        if (c->reaped) {
            if (c->out_fd >= 0)
                drain_output(spec, c, res);  /* what it left; no waiting */
            return;
        }
        now = apr_time_now();
        if (now >= deadline || (spec->cancel && *spec->cancel)) {
            if (now >= deadline)
                res->timed_out = 1;
            else
                res->cancelled = 1;
            kill_group(c);
            return;
        }
        wait_ms = (int)((deadline - now + 999) / 1000);
        if (c->pid_fd < 0 && wait_ms > 20)
            wait_ms = 20;   /* no pidfd: look again soon */
        if (spec->cancel && wait_ms > 100)
            wait_ms = 100;  /* a signal handler may set it: look often */
        if (c->in_fd >= 0)
            fds[nfds++] = (struct pollfd){c->in_fd, POLLOUT, 0};
        if (c->out_fd >= 0)
            fds[nfds++] = (struct pollfd){c->out_fd, POLLIN, 0};
        if (c->pid_fd >= 0)
            fds[nfds++] = (struct pollfd){c->pid_fd, POLLIN, 0};
        if (poll(fds, (nfds_t)nfds, wait_ms) <= 0)
            continue;
        if (c->in_fd >= 0)
            feed_input(spec, c);
        if (c->out_fd >= 0)
            drain_output(spec, c, res);
    }
}

void hf_run(apr_pool_t *p, const hf_run_spec_t *spec, hf_run_result_t *res)
{
    child_t c = {0, -1, -1, -1, 0, 0, 0};
    apr_time_t start = apr_time_now(), deadline;

    memset(res, 0, sizeof *res);
    res->output = apr_palloc(p, spec->output_max + 1);
    if (spawn(p, spec, &c, &res->error) != 0) {
        res->output[0] = '\0';
        return;
    }
    res->started = 1;
    res->pid = (long)c.pid;
    if (spec->input_len == 0)
        close_fd(&c.in_fd);
    deadline = start + apr_time_from_sec(spec->timeout);
    if (spec->deadline && spec->deadline < deadline)
        deadline = spec->deadline;
    supervise(spec, &c, res, deadline);
    close_fd(&c.in_fd);
    close_fd(&c.out_fd);
    close_fd(&c.pid_fd);
    res->output[res->output_len] = '\0';
    res->elapsed = apr_time_now() - start;
    if (WIFEXITED(c.status))
        res->exit_code = WEXITSTATUS(c.status);
    else if (WIFSIGNALED(c.status))
        res->signal = WTERMSIG(c.status);
}

int hf_run_succeeded(const hf_run_result_t *res)
{
    return res->started && !res->timed_out && !res->cancelled && !res->signal
           && res->exit_code == 0;
}

const char *hf_run_describe(apr_pool_t *p, const hf_run_result_t *res)
{
    if (!res->started)
        return "not started";
    if (res->timed_out)
        return "timeout";
    if (res->cancelled)
        return "stopped";
    if (res->signal)
        return apr_psprintf(p, "signal %d", res->signal);
    return apr_psprintf(p, "exit %d", res->exit_code);
}
