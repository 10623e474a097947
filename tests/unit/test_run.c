/* test_run.c - handlers run with no shell, bounded in time and output. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "unit.h"

static hf_run_result_t res;

static void run(const char *script, const char *input, int timeout)
{
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    const char *envp[] = {"PATH=/usr/bin:/bin", "HRFLOW_TYPE=a.b.c", NULL};
    hf_run_spec_t spec = {argv, envp, input, input ? strlen(input) : 0,
                          timeout, 64, NULL, 0};

    hf_run(pool, &spec, &res);
}

START_TEST(exit_status_and_output)
{
    run("echo out; echo err >&2; exit 3", NULL, 10);
    ck_assert(res.started);
    ck_assert_int_eq(res.exit_code, 3);
    ck_assert(!hf_run_succeeded(&res));
    ck_assert_str_eq(res.output, "out\nerr\n");
    ck_assert_str_eq(hf_run_describe(pool, &res), "exit 3");
}
END_TEST

START_TEST(input_and_environment)
{
    run("read line; echo \"$line $HRFLOW_TYPE\"; env | wc -l", "{\"a\":1}\n",
        10);
    ck_assert(hf_run_succeeded(&res));
    /* PATH, HRFLOW_TYPE and what sh itself adds (PWD, SHLVL, _). */
    ck_assert_ptr_nonnull(strstr(res.output, "{\"a\":1} a.b.c\n"));
}
END_TEST

START_TEST(large_input_does_not_deadlock)
{
    apr_size_t n = 1 << 20;
    char *big = apr_palloc(pool, n + 1);
    const char *argv[] = {"/bin/sh", "-c", "wc -c; cat >/dev/null", NULL};
    const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    hf_run_spec_t spec = {argv, envp, big, n, 10, 64, NULL, 0};

    memset(big, 'x', n);
    big[n] = '\0';
    hf_run(pool, &spec, &res);
    ck_assert(hf_run_succeeded(&res));
    ck_assert_str_eq(res.output, "1048576\n");
}
END_TEST

START_TEST(handler_ignoring_input)
{
    apr_size_t n = 1 << 20;
    char *big = apr_pcalloc(pool, n);
    const char *argv[] = {"/bin/true", NULL};
    const char *envp[] = {NULL};
    hf_run_spec_t spec = {argv, envp, big, n, 10, 64, NULL, 0};

    /* As in every process that runs handlers (hf_run.c). */
    signal(SIGPIPE, SIG_IGN);
    hf_run(pool, &spec, &res);
    ck_assert(hf_run_succeeded(&res));
}
END_TEST

START_TEST(output_is_bounded)
{
    run("i=0; while [ $i -lt 100 ]; do echo 0123456789; i=$((i+1)); done", NULL,
        10);
    ck_assert(hf_run_succeeded(&res));
    ck_assert_uint_eq(res.output_len, 64);
    ck_assert_uint_eq(res.output_dropped, 1100 - 64);
}
END_TEST

START_TEST(timeout_kills_the_whole_group)
{
    char pidfile[] = "/tmp/hrflow-unit-pid-XXXXXX";
    char buf[32] = "";
    FILE *f;
    int fd = mkstemp(pidfile);

    close(fd);
    run(apr_psprintf(pool, "sleep 60 & echo $! > %s; trap '' TERM; sleep 60",
                     pidfile),
        NULL, 1);
    ck_assert(res.timed_out);
    ck_assert(!hf_run_succeeded(&res));
    ck_assert_str_eq(hf_run_describe(pool, &res), "timeout");
    f = fopen(pidfile, "r");
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
    fclose(f);
    unlink(pidfile);
    /* The background child was in the handler's group: gone too. */
    ck_assert_int_eq(kill(atoi(buf), 0), -1);
}
END_TEST

START_TEST(grandchild_holding_output_does_not_block)
{
    run("sleep 30 & echo done", NULL, 20);
    ck_assert(hf_run_succeeded(&res));
    ck_assert(!res.timed_out);
    ck_assert_ptr_nonnull(strstr(res.output, "done"));
}
END_TEST

START_TEST(killed_by_signal)
{
    run("kill -9 $$", NULL, 10);
    ck_assert_int_eq(res.signal, 9);
    ck_assert_str_eq(hf_run_describe(pool, &res), "signal 9");
}
END_TEST

START_TEST(missing_program)
{
    const char *argv[] = {"/nonexistent/handler", NULL};
    const char *envp[] = {NULL};
    hf_run_spec_t spec = {argv, envp, NULL, 0, 10, 64, NULL, 0};

    hf_run(pool, &spec, &res);
    ck_assert(!res.started);
    ck_assert_ptr_nonnull(strstr(res.error, "No such file"));
    ck_assert_str_eq(hf_run_describe(pool, &res), "not started");
}
END_TEST

/* A script in a fresh file of the test's own; its path. */
static const char *script_file(const char *text)
{
    char *path = apr_pstrdup(pool, "/tmp/hrflow-unit-XXXXXX");
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    return path;
}

START_TEST(crlf_script_is_named_as_such)
{
    const char *crlf = script_file("#!/bin/sh\r\nexit 0\r\n");
    const char *lf = script_file("#!/bin/sh\nexit 0\r\n");
    const char *binary = script_file("\x7f" "ELF\r\n");
    const char *why = hf_run_check_crlf(pool, crlf);

    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_nonnull(strstr(why, "CRLF line endings"));
    ck_assert_ptr_nonnull(strstr(why, crlf));
    ck_assert_ptr_null(hf_run_check_crlf(pool, lf));
    ck_assert_ptr_null(hf_run_check_crlf(pool, binary));
    ck_assert_ptr_null(hf_run_check_crlf(pool, "/nonexistent/handler"));
    unlink(crlf);
    unlink(lf);
    unlink(binary);
}
END_TEST

START_TEST(runs_in_program_directory_without_our_fds)
{
    const char *argv[] = {"/bin/sh", "-c", "pwd; ls /proc/self/fd | wc -l",
                          NULL};
    const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    hf_run_spec_t spec = {argv, envp, NULL, 0, 10, 64, NULL, 0};

    char bin[4096];

    ck_assert_ptr_nonnull(realpath("/bin", bin));
    hf_run(pool, &spec, &res);
    ck_assert(hf_run_succeeded(&res));
    /* 0, 1, 2, and the directory ls reads. */
    ck_assert_str_eq(res.output, apr_pstrcat(pool, bin, "\n4\n", NULL));
}
END_TEST

START_TEST(cancel_stops_the_handler)
{
    const char *argv[] = {"/bin/sleep", "30", NULL};
    const char *envp[] = {NULL};
    atomic_int stop = 1;
    hf_run_spec_t spec = {argv, envp, NULL, 0, 60, 64, &stop, 0};

    hf_run(pool, &spec, &res);
    ck_assert(res.started);
    ck_assert(res.cancelled && !res.timed_out);
    ck_assert(!hf_run_succeeded(&res));
    ck_assert_str_eq(hf_run_describe(pool, &res), "stopped");
}
END_TEST

START_TEST(deadline_stops_the_handler_like_its_timeout)
{
    const char *argv[] = {"/bin/sleep", "30", NULL};
    const char *envp[] = {NULL};
    hf_run_spec_t spec = {argv, envp, NULL, 0, 60, 64, NULL,
                          apr_time_now() - 1};

    hf_run(pool, &spec, &res);
    ck_assert(res.started);
    ck_assert(res.timed_out);
    ck_assert_str_eq(hf_run_describe(pool, &res), "timeout");
}
END_TEST

/* Whether a process still lives and is not on its way out: not gone, not
 * a zombie, not running or in the kernel with SIGKILL pending.  A sleeping
 * process without SIGKILL pending stays as it is. */
static int lives_on(pid_t pid)
{
    char path[64], text[2048], *state, *pending;
    unsigned long long shared = 0, own = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    state = strstr(text, "State:\t");
    if (!state || state[7] == 'Z' || state[7] == 'X')
        return 0;
    if ((pending = strstr(text, "ShdPnd:\t")))
        shared = strtoull(pending + 8, NULL, 16);
    if ((pending = strstr(text, "SigPnd:\t")))
        own = strtoull(pending + 8, NULL, 16);
    if ((shared | own) & (1ULL << (SIGKILL - 1)))
        return -1;                      /* dying */
    return state[7] == 'R' || state[7] == 'D' ? -1 : 1;
}

/* A dispatcher (a child here) killed with -9 mid-handler: the handler must
 * not outlive it.  Its parent-death signal is sent before the dispatcher
 * can be reaped, so from then on the handler is dying or gone: wait while
 * it is dying, fail if it just sleeps on. */
START_TEST(handler_dies_with_its_dispatcher)
{
    char file[] = "/tmp/hrflow-unit-pid-XXXXXX";
    int fd = mkstemp(file), state;
    pid_t dispatcher, handler = 0;
    char buf[32] = "";

    ck_assert_int_ge(fd, 0);
    dispatcher = fork();
    if (dispatcher == 0) {
        const char *script = apr_psprintf(pool, "echo $$ > %s; "
                                          "exec sleep 3600", file);
        hf_run_die_with_us();
        run(script, NULL, 7200);
        _exit(0);
    }
    while (handler <= 0 || lives_on(handler) != 1) {
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        handler = atoi(buf);
        usleep(10000);
    }
    kill(dispatcher, SIGKILL);
    waitpid(dispatcher, NULL, 0);
    while ((state = lives_on(handler)) < 0)
        usleep(1000);
    if (state > 0)
        kill(handler, SIGKILL);         /* the test fails: clean up */
    ck_assert_msg(state == 0, "handler %ld outlived its dispatcher",
                  (long)handler);
    close(fd);
    unlink(file);
}
END_TEST

/* The dispatcher's way of starting a handler keeps the contract: exit
 * status, output, a failed exec reported, a process group of its own. */
START_TEST(tied_handlers_run_as_spawned_ones)
{
    pid_t child = fork();
    int status;

    if (child == 0) {
        const char *argv[] = {"/nonexistent/handler", NULL};
        const char *envp[] = {NULL};
        hf_run_spec_t spec = {argv, envp, NULL, 0, 10, 64, NULL, 0};
        hf_run_die_with_us();
        run("read x; echo \"$x $HRFLOW_TYPE\"; ps -o pgid= -p $$ | tr -d ' ';"
            " echo $$; exit 3", "in\n", 10);
        if (!res.started || res.exit_code != 3)
            _exit(1);
        {
            char *line2 = strchr(res.output, '\n');
            if (strncmp(res.output, "in a.b.c\n", 9) != 0 || !line2)
                _exit(2);
            /* pgid equals the handler's pid */
            line2++;
            if (strncmp(line2, strchr(line2, '\n') + 1,
                        (size_t)(strchr(line2, '\n') - line2)) != 0)
                _exit(3);
        }
        hf_run(pool, &spec, &res);
        _exit(res.started ? 4 : 0);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* Root reads a handler's first line at startup, maybe from a folder the
 * server's user can write: what a symlink there leads to is opened only if
 * it is a regular file (opening a FIFO or a device can act by itself, as
 * /dev/watchdog arms the watchdog).  inotify sees every open. */
START_TEST(crlf_check_opens_only_regular_files)
{
    char dir[] = "/tmp/hrflow-unit-fifo-XXXXXX";
    const char *fifo, *link;
    char events[256];
    int in;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    fifo = apr_pstrcat(pool, dir, "/fifo", NULL);
    link = apr_pstrcat(pool, dir, "/handler", NULL);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(symlink(fifo, link), 0);
    in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ck_assert_int_ge(in, 0);
    ck_assert_int_ge(inotify_add_watch(in, fifo, IN_OPEN), 0);
    ck_assert_ptr_null(hf_run_check_crlf(pool, link));
    ck_assert_int_eq(read(in, events, sizeof events), -1);
    close(in);
    unlink(link);
    unlink(fifo);
    rmdir(dir);
}
END_TEST

static Suite *run_suite(void)
{
    Suite *s = suite_create("run");
    TCase *tc = unit_case(s, "run");

    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, exit_status_and_output);
    tcase_add_test(tc, input_and_environment);
    tcase_add_test(tc, large_input_does_not_deadlock);
    tcase_add_test(tc, handler_ignoring_input);
    tcase_add_test(tc, output_is_bounded);
    tcase_add_test(tc, timeout_kills_the_whole_group);
    tcase_add_test(tc, grandchild_holding_output_does_not_block);
    tcase_add_test(tc, killed_by_signal);
    tcase_add_test(tc, missing_program);
    tcase_add_test(tc, crlf_script_is_named_as_such);
    tcase_add_test(tc, crlf_check_opens_only_regular_files);
    tcase_add_test(tc, runs_in_program_directory_without_our_fds);
    tcase_add_test(tc, cancel_stops_the_handler);
    tcase_add_test(tc, deadline_stops_the_handler_like_its_timeout);
    tcase_add_test(tc, handler_dies_with_its_dispatcher);
    tcase_add_test(tc, tied_handlers_run_as_spawned_ones);
    return s;
}

UNIT_MAIN(run_suite)
