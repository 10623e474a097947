/* test_config.c - directives, their errors, and per-directory merging. */
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include "unit.h"

static const char *apply(hf_config_t *cfg, const char *line)
{
    hf_config_ctx_t ctx = {pool, "/"};
    char **argv;
    const hf_directive_t *d;

    apr_tokenize_to_argv(line, &argv, pool);
    d = hf_config_directive_find(argv[0]);
    ck_assert_ptr_nonnull(d);
    {
        int argc = 0;
        while (argv[argc + 1])
            argc++;
        return hf_config_apply(&ctx, cfg, d, argc, argv + 1);
    }
}

static const char *write_file(const char *text, int mode)
{
    char *path = apr_pstrdup(pool, "/tmp/hrflow-unit-XXXXXX");
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    chmod(path, (mode_t)mode);
    return path;
}

START_TEST(defaults)
{
    hf_config_t *c = hf_config_create(pool);

    ck_assert_int_eq(hf_config_signature(c), HF_SIG_REQUIRED);
    ck_assert_int_eq(hf_config_timeout(c), 30);
    ck_assert_int_eq(hf_config_max_body(c), 1048576);
    ck_assert_int_eq(hf_config_max_events(c), 100);
    ck_assert_str_eq(hf_config_check_endpoint(pool, c),
                     "HrflowSecret: no HrflowSecret or HrflowSecretFile while "
                     "HrflowSignature is required");
}
END_TEST

/* Durable mode: a body the spool could not read back is refused at
 * startup, not answered 202 and left unrunnable in failed/. */
START_TEST(durable_max_body_fits_a_spool_file)
{
    hf_config_t *c = hf_config_create(pool);
    char line[64];

    ck_assert_ptr_null(apply(c, "HrflowSignature optional"));
    ck_assert_ptr_null(apply(c, "HrflowMaxBody 1073741824"));
    ck_assert_ptr_null(hf_config_check_endpoint(pool, c));   /* no spool */
    ck_assert_ptr_null(apply(c, "HrflowSpool /var/spool/hrflow"));
    ck_assert_str_eq(hf_config_check_endpoint(pool, c),
                     apr_psprintf(pool, "HrflowMaxBody: 1073741824 bytes is "
                                  "more than a spool file holds in durable "
                                  "mode (HrflowSpool): at most %d",
                                  HF_SPOOL_MAX_BODY));
    snprintf(line, sizeof(line), "HrflowMaxBody %d", HF_SPOOL_MAX_BODY);
    ck_assert_ptr_null(apply(c, line));
    ck_assert_ptr_null(hf_config_check_endpoint(pool, c));
    snprintf(line, sizeof(line), "HrflowMaxBody %d", HF_SPOOL_MAX_BODY + 1);
    ck_assert_ptr_null(apply(c, line));
    ck_assert_ptr_nonnull(hf_config_check_endpoint(pool, c));
    ck_assert_int_lt(HF_SPOOL_MAX_BODY, HF_SPOOL_FILE_MAX);
}
END_TEST

/* Found by tests/fuzz/fuzz_conffile.c: no request header has no name. */
START_TEST(empty_signature_header_refused)
{
    hf_config_t *c = hf_config_create(pool);

    ck_assert_str_eq(apply(c, "HrflowSignatureHeader \"\""),
                     "HrflowSignatureHeader: an empty name is not a header "
                     "name");
    ck_assert_ptr_null(c->signature_header);
}
END_TEST

START_TEST(values_and_errors)
{
    hf_config_t *c = hf_config_create(pool);

    ck_assert_ptr_null(apply(c, "HrflowTimeout 5"));
    ck_assert_int_eq(hf_config_timeout(c), 5);
    ck_assert_ptr_null(apply(c, "HrflowMaxBody 2048"));
    ck_assert_int_eq(hf_config_max_body(c), 2048);
    ck_assert_ptr_null(apply(c, "HrflowSignature Optional"));
    ck_assert_int_eq(hf_config_signature(c), HF_SIG_OPTIONAL);
    ck_assert_ptr_null(hf_config_check_endpoint(pool, c));
    ck_assert_str_eq(apply(c, "HrflowTimeout 5sec"),
                     "HrflowTimeout: '5sec' is not a time from 1ms to 86400s: "
                     "a whole number of seconds, or with a unit as httpd's "
                     "timeouts (500ms, 30s, 2min, 1h)");
    ck_assert_ptr_nonnull(apply(c, "HrflowTimeout 0"));
    ck_assert_ptr_nonnull(apply(c, "HrflowTimeout -1"));
    ck_assert_ptr_nonnull(apply(c, "HrflowMaxEvents 99999999999999999999"));
    ck_assert_ptr_nonnull(apply(c, "HrflowMaxBody \"\""));
    ck_assert_ptr_nonnull(apply(c, "HrflowSignature maybe"));
    ck_assert_ptr_nonnull(apply(c, "HrflowSignatureHeader X:Y"));
    ck_assert_ptr_nonnull(apply(c, "HrflowTimeout 1 2"));
    ck_assert_ptr_nonnull(apply(c, "HrflowSecret \"\""));
    ck_assert_int_eq(hf_config_timeout(c), 5);
}
END_TEST

START_TEST(handlers_checked_at_startup)
{
    hf_config_t *c = hf_config_create(pool);
    const char *noexec = write_file("#!/bin/sh\n", 0644);

    ck_assert_ptr_null(apply(c, "HrflowHandler job.* /bin/echo -n hi"));
    ck_assert_int_eq(c->handlers->nelts, 1);
    ck_assert_str_eq(APR_ARRAY_IDX(c->handlers, 0, hf_handler_t).argv[2], "hi");
    ck_assert_ptr_null(APR_ARRAY_IDX(c->handlers, 0, hf_handler_t).argv[3]);
    ck_assert_str_eq(apply(c, "HrflowHandler job.* /nonexistent/x"),
                     "HrflowHandler: cannot run /nonexistent/x: "
                     "No such file or directory");
    ck_assert_ptr_nonnull(strstr(apply(c, apr_pstrcat(pool, "HrflowHandler * ",
                                                      noexec, NULL)),
                                 "not executable"));
    ck_assert_ptr_nonnull(strstr(apply(c, "HrflowHandler * /tmp"),
                                 "not a regular file"));
    ck_assert_ptr_nonnull(strstr(apply(c, "HrflowHandler Job.[ /bin/true"),
                                 "bad pattern"));
    ck_assert_ptr_nonnull(apply(c, "HrflowHandler job.*"));
    unlink(noexec);
}
END_TEST

START_TEST(secret_file)
{
    hf_config_t *c = hf_config_create(pool);
    const char *f = write_file("# rotation\n  old \r\n\nnew\n", 0600);
    const char *empty = write_file("# nothing\n\n", 0600);

    ck_assert_ptr_null(apply(c, apr_pstrcat(pool, "HrflowSecretFile ", f, NULL)));
    ck_assert_int_eq(c->secrets->nelts, 2);
    ck_assert_str_eq(APR_ARRAY_IDX(c->secrets, 0, const char *), "old");
    ck_assert_str_eq(APR_ARRAY_IDX(c->secrets, 1, const char *), "new");
    ck_assert_ptr_nonnull(strstr(apply(c, apr_pstrcat(pool, "HrflowSecretFile ",
                                                      empty, NULL)),
                                 "no secret in"));
    ck_assert_ptr_nonnull(strstr(apply(c, "HrflowSecretFile /nonexistent"),
                                 "HrflowSecretFile: cannot read /nonexistent"));
    unlink(f);
    unlink(empty);
}
END_TEST

/* A line is one secret however long, up to 65536 bytes; a longer one is a
 * startup error, never several secrets.  A FIFO is refused, not waited on. */
START_TEST(secret_file_long_lines)
{
    hf_config_t *c = hf_config_create(pool);
    char *big = apr_palloc(pool, 70001), *fifo;
    const char *f, *err;

    memset(big, 'a', 70000);
    big[5000] = '\0';
    f = write_file(apr_pstrcat(pool, big, "\nshort\n", NULL), 0600);
    ck_assert_ptr_null(apply(c, apr_pstrcat(pool, "HrflowSecretFile ", f, NULL)));
    ck_assert_int_eq(c->secrets->nelts, 2);
    ck_assert_str_eq(APR_ARRAY_IDX(c->secrets, 0, const char *), big);
    unlink(f);

    big[5000] = 'a';
    big[70000] = '\0';
    f = write_file(apr_pstrcat(pool, "ok\n", big, "\n", NULL), 0600);
    err = apply(c, apr_pstrcat(pool, "HrflowSecretFile ", f, NULL));
    ck_assert_str_eq(err, apr_pstrcat(pool, "HrflowSecretFile: line 2 of ", f,
                                      ": longer than 65536 bytes", NULL));
    unlink(f);

    fifo = apr_pstrcat(pool, f, ".fifo", NULL);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_ptr_nonnull(strstr(apply(c, apr_pstrcat(pool, "HrflowSecretFile ",
                                                      fifo, NULL)),
                                 "not a regular file"));
    unlink(fifo);
}
END_TEST

START_TEST(merge_inherits_and_overrides)
{
    hf_config_t *server = hf_config_create(pool);
    hf_config_t *loc = hf_config_create(pool);
    hf_config_t *m;

    apply(server, "HrflowSecret outer");
    apply(server, "HrflowTimeout 7");
    apply(server, "HrflowHandler * /bin/true");
    apply(loc, "HrflowMaxEvents 3");
    apply(loc, "HrflowHandler job.* /bin/false");
    m = hf_config_merge(pool, server, loc);
    ck_assert_int_eq(hf_config_timeout(m), 7);
    ck_assert_int_eq(hf_config_max_events(m), 3);
    ck_assert_str_eq(APR_ARRAY_IDX(m->secrets, 0, const char *), "outer");
    ck_assert_int_eq(m->handlers->nelts, 2);
    ck_assert_str_eq(hf_route(m->handlers, "job.a.b")->argv[0], "/bin/false");
    ck_assert_str_eq(hf_route(m->handlers, "profile.a.b")->argv[0], "/bin/true");
    apply(loc, "HrflowSecret inner");
    m = hf_config_merge(pool, server, loc);
    ck_assert_int_eq(m->secrets->nelts, 1);
    ck_assert_str_eq(APR_ARRAY_IDX(m->secrets, 0, const char *), "inner");
}
END_TEST

/* HrflowTimeout reads times as httpd's own timeouts do, in both front
 * ends (the CGI's config file goes through the same setter). */
START_TEST(timeouts_in_httpd_syntax)
{
    static const struct {
        const char *text;
        apr_interval_time_t usec;
    } good[] = {{"30", 30000000}, {"30s", 30000000}, {"30S", 30000000},
                {"500ms", 500000}, {"500MS", 500000}, {"2min", 120000000},
                {"2mi", 120000000}, {"1h", 3600000000}, {"0", 0}};
    static const char *const bad[] = {"", "s", "-1", "+1", "1.5s", "30sec",
                                      "30 s", "1m", "5d", "ms",
                                      "99999999999999999999",
                                      "1000000001h"};
    hf_config_t *c = hf_config_create(pool);
    apr_interval_time_t t;
    size_t i;

    for (i = 0; i < sizeof good / sizeof *good; i++) {
        ck_assert_msg(!hf_config_parse_time(good[i].text, &t), "%s",
                      good[i].text);
        ck_assert_int_eq(t, good[i].usec);
    }
    for (i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(hf_config_parse_time(bad[i], &t), "%s", bad[i]);
    ck_assert_ptr_null(apply(c, "HrflowTimeout 500ms"));
    ck_assert_int_eq(hf_config_timeout_ms(c), 500);
    ck_assert_int_eq(hf_config_timeout(c), 1);   /* whole seconds, up */
    ck_assert_ptr_null(apply(c, "HrflowTimeout 2min"));
    ck_assert_int_eq(hf_config_timeout(c), 120);
    ck_assert_ptr_null(apply(c, "HrflowTimeout 24h"));
    ck_assert_ptr_nonnull(apply(c, "HrflowTimeout 25h"));
    ck_assert_ptr_nonnull(apply(c, "HrflowTimeout 0ms"));
    ck_assert_int_eq(hf_config_timeout_ms(c), 86400000);
}
END_TEST

/* Relative paths merge onto the base as ap_server_root_relative merges
 * them onto ServerRoot: one folder has one name. */
START_TEST(relative_paths_are_normalised)
{
    hf_config_t *c = hf_config_create(pool);
    hf_config_ctx_t ctx = {pool, "/srv/www"};
    char *dots[] = {"./x/../spool", NULL}, *up[] = {"../spool", NULL};

    ck_assert_ptr_null(hf_config_apply(
        &ctx, c, hf_config_directive_find("HrflowSpool"), 1, dots));
    ck_assert_str_eq(c->spool, "/srv/www/spool");
    ck_assert_ptr_null(hf_config_apply(
        &ctx, c, hf_config_directive_find("HrflowSpool"), 1, up));
    ck_assert_str_eq(c->spool, "/srv/spool");
    up[0] = "/var/spool/hrflow//";
    ck_assert_ptr_null(hf_config_apply(
        &ctx, c, hf_config_directive_find("HrflowSpool"), 1, up));
    ck_assert_str_eq(c->spool, "/var/spool/hrflow");
}
END_TEST

START_TEST(relative_paths_from_base_dir)
{
    hf_config_t *c = hf_config_create(pool);
    hf_config_ctx_t ctx = {pool, "/bin"};
    char *argv[] = {"*", "true", NULL};

    ck_assert_ptr_null(hf_config_apply(
        &ctx, c, hf_config_directive_find("HrflowHandler"), 2, argv));
    ck_assert_str_eq(APR_ARRAY_IDX(c->handlers, 0, hf_handler_t).argv[0],
                     "/bin/true");
}
END_TEST

/* Compares at most what is expected: a lost string reads as scribbles. */
#define ck_assert_kept(actual, expected) \
    ck_assert_msg(strncmp((actual), (expected), strlen(expected) + 1) == 0, \
                  "'%s' was not kept", (expected))

/* httpd splits a directive's words into cmd->temp_pool, which dies after
 * the config pass: every string the configuration keeps must be its own. */
START_TEST(kept_strings_outlive_the_words)
{
    static const char *const lines[] = {
        "HrflowSecret kept-secret",
        "HrflowSignatureHeader X-Kept-Signature",
        "HrflowHandler job.* /bin/true --kept-arg",
        "HrflowSpool /var/spool/kept",
    };
    hf_config_ctx_t ctx = {pool, "/"};
    hf_config_t *c = hf_config_create(pool);
    const hf_handler_t *h;
    apr_pool_t *words;
    apr_size_t i;

    apr_pool_create(&words, pool);
    for (i = 0; i < sizeof lines / sizeof *lines; i++) {
        char **argv;
        int argc = 0;
        apr_tokenize_to_argv(lines[i], &argv, words);
        while (argv[argc + 1])
            argc++;
        ck_assert_ptr_null(hf_config_apply(
            &ctx, c, hf_config_directive_find(argv[0]), argc, argv + 1));
    }
    /* As after the config pass: the words' memory is reused by others. */
    apr_pool_clear(words);
    memset(apr_palloc(words, 6000), 'X', 6000);

    ck_assert_kept(APR_ARRAY_IDX(c->secrets, 0, const char *), "kept-secret");
    ck_assert_kept(c->signature_header, "X-Kept-Signature");
    h = hf_route(c->handlers, "job.storing.update");
    ck_assert_ptr_nonnull(h);
    ck_assert_kept(h->pattern, "job.*");
    ck_assert_kept(h->argv[0], "/bin/true");
    ck_assert_kept(h->argv[1], "--kept-arg");
    ck_assert_kept(c->spool, "/var/spool/kept");
}
END_TEST

START_TEST(every_directive_in_table)
{
    static const char *names[] = {
        "HrflowSecret", "HrflowSecretFile", "HrflowSignature",
        "HrflowSignatureHeader", "HrflowHandler", "HrflowTimeout",
        "HrflowMaxBody", "HrflowMaxEvents", "HrflowSpool",
        "HrflowConcurrency", "HrflowRetry"};
    apr_size_t i;

    for (i = 0; i < sizeof names / sizeof *names; i++)
        ck_assert_msg(hf_config_directive_find(names[i]) != NULL, "%s",
                      names[i]);
    ck_assert_ptr_null(hf_config_directive_find("HrflowNope"));
}
END_TEST

START_TEST(server_settings_overlay_and_conflicts)
{
    hf_config_t *dir = hf_config_create(pool), *a = hf_config_create(pool);
    hf_config_t *b = hf_config_create(pool);
    const hf_config_t *e;

    ck_assert_ptr_null(apply(dir, "HrflowTimeout 7"));
    ck_assert_ptr_null(apply(a, "HrflowSpool /s"));
    ck_assert_ptr_null(apply(a, "HrflowRetry 2"));
    e = hf_config_with_server(pool, dir, a);
    ck_assert_str_eq(e->spool, "/s");
    ck_assert_int_eq(hf_config_retry(e), 2);
    ck_assert_int_eq(hf_config_timeout(e), 7);
    ck_assert_ptr_null(dir->spool);     /* the section itself is unchanged */
    /* Unset and the default agree; a different value is named. */
    ck_assert_ptr_null(apply(b, "HrflowRetry 5"));
    ck_assert_ptr_null(hf_config_server_conflict(pool, b, hf_config_create(pool)));
    ck_assert_str_eq(hf_config_server_conflict(pool, a, b),
                     "HrflowRetry 2 and 5");
    ck_assert_ptr_null(apply(b, "HrflowRetry 2"));
    ck_assert_ptr_null(apply(b, "HrflowRetryDelay 9"));
    ck_assert_str_eq(hf_config_server_conflict(pool, a, b),
                     "HrflowRetryDelay 1 and 9");
    /* One spool, one dispatcher: it forwards to one queue or none. */
    ck_assert_ptr_null(apply(b, "HrflowRetryDelay 1"));
    ck_assert_ptr_null(apply(a, "HrflowQueue postgresql://u:pw@db/x"));
    ck_assert_str_eq(hf_config_server_conflict(pool, a, b),
                     "HrflowQueue (set in one only)");
    ck_assert_ptr_null(apply(b, "HrflowQueue postgresql://u:other@db/x"));
    ck_assert_str_eq(hf_config_server_conflict(pool, a, b),
                     "HrflowQueue (two URLs)");
    ck_assert_ptr_null(apply(b, "HrflowQueue postgresql://u:pw@db/x"));
    ck_assert_ptr_null(hf_config_server_conflict(pool, a, b));
    ck_assert_ptr_null(apply(b, "HrflowQueueName other"));
    ck_assert_str_eq(hf_config_server_conflict(pool, a, b),
                     "HrflowQueueName hrflow and other");
}
END_TEST

/* The kernel's mode check for the server's User, evaluated by root. */
START_TEST(runnable_by_the_user_not_by_root)
{
    static const long with_group[] = {1000, 4242}, alone[] = {1000};
    hf_user_t member = {"web", 1000, with_group, 2};
    hf_user_t other = {"web", 1000, alone, 1};
    hf_user_t root = {"root", 0, alone, 1};
    char dir[] = "/tmp/hrflow-unit-exec-XXXXXX";
    const char *prog, *why;

    if (geteuid() != 0)
        return;                  /* chown needs root */
    ck_assert_ptr_nonnull(mkdtemp(dir));
    chmod(dir, 0755);
    prog = apr_pstrcat(pool, dir, "/h", NULL);
    close(open(prog, O_CREAT | O_WRONLY, 0700));
    /* 0700 root: root may, the user may not. */
    ck_assert_int_eq(chown(prog, 0, 0), 0);
    chmod(prog, 0700);
    ck_assert_ptr_null(hf_config_runnable_by(pool, prog, &root));
    why = hf_config_runnable_by(pool, prog, &member);
    ck_assert_str_eq(why, apr_psprintf(pool, "cannot run %s: user web cannot "
                                       "execute it (mode 0700, owner uid 0, "
                                       "group gid 0)", prog));
    /* Group class through a supplementary group only. */
    ck_assert_int_eq(chown(prog, 0, 4242), 0);
    chmod(prog, 0710);
    ck_assert_ptr_null(hf_config_runnable_by(pool, prog, &member));
    ck_assert_ptr_nonnull(hf_config_runnable_by(pool, prog, &other));
    /* The owner's class alone applies to the owner. */
    ck_assert_int_eq(chown(prog, 1000, 0), 0);
    chmod(prog, 0011);
    ck_assert_ptr_nonnull(hf_config_runnable_by(pool, prog, &other));
    chmod(prog, 0100);
    ck_assert_ptr_null(hf_config_runnable_by(pool, prog, &other));
    /* No x bit at all: not even root. */
    chmod(prog, 0600);
    ck_assert_ptr_nonnull(hf_config_runnable_by(pool, prog, &root));
    /* A folder on the way the user cannot search. */
    chmod(prog, 0755);
    chmod(dir, 0700);
    why = hf_config_runnable_by(pool, prog, &member);
    ck_assert_str_eq(why, apr_psprintf(pool, "cannot run %s: user web cannot "
                                       "enter %s (mode 0700, owner uid 0, "
                                       "group gid 0)", prog, dir));
    ck_assert_ptr_null(hf_config_runnable_by(pool, prog, &root));
    unlink(prog);
    rmdir(dir);
}
END_TEST

/* The kernel goes where a symlink points, and an interpreter reads a
 * script as the user: both are checked as the handler will run. */
START_TEST(runnable_by_through_links_and_for_scripts)
{
    static const long alone[] = {1000};
    hf_user_t web = {"web", 1000, alone, 1};
    char dir[] = "/tmp/hrflow-unit-link-XXXXXX";
    const char *private, *prog, *link, *script, *why;
    int fd;

    if (geteuid() != 0)
        return;                  /* chown needs root */
    ck_assert_ptr_nonnull(mkdtemp(dir));
    chmod(dir, 0755);
    private = apr_pstrcat(pool, dir, "/private", NULL);
    ck_assert_int_eq(mkdir(private, 0700), 0);
    prog = apr_pstrcat(pool, private, "/h", NULL);
    close(open(prog, O_CREAT | O_WRONLY, 0755));
    chmod(prog, 0755);
    link = apr_pstrcat(pool, dir, "/h", NULL);
    ck_assert_int_eq(symlink(prog, link), 0);
    /* The link's folder is open, its target's is not. */
    why = hf_config_runnable_by(pool, link, &web);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_nonnull(strstr(why, private));
    /* A script the user may execute but not read cannot run. */
    script = apr_pstrcat(pool, dir, "/s.sh", NULL);
    fd = open(script, O_CREAT | O_WRONLY, 0711);
    ck_assert_int_eq(write(fd, "#!/bin/sh\nexit 0\n", 18), 18);
    close(fd);
    chmod(script, 0711);
    why = hf_config_runnable_by(pool, script, &web);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_nonnull(strstr(why, "read"));
    chmod(script, 0755);
    ck_assert_ptr_null(hf_config_runnable_by(pool, script, &web));
    unlink(script);
    unlink(link);
    unlink(prog);
    rmdir(private);
    rmdir(dir);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = unit_case(s, "config");

    tcase_add_test(tc, defaults);
    tcase_add_test(tc, values_and_errors);
    tcase_add_test(tc, durable_max_body_fits_a_spool_file);
    tcase_add_test(tc, empty_signature_header_refused);
    tcase_add_test(tc, handlers_checked_at_startup);
    tcase_add_test(tc, secret_file);
    tcase_add_test(tc, secret_file_long_lines);
    tcase_add_test(tc, merge_inherits_and_overrides);
    tcase_add_test(tc, relative_paths_from_base_dir);
    tcase_add_test(tc, relative_paths_are_normalised);
    tcase_add_test(tc, timeouts_in_httpd_syntax);
    tcase_add_test(tc, kept_strings_outlive_the_words);
    tcase_add_test(tc, every_directive_in_table);
    tcase_add_test(tc, server_settings_overlay_and_conflicts);
    tcase_add_test(tc, runnable_by_the_user_not_by_root);
    tcase_add_test(tc, runnable_by_through_links_and_for_scripts);
    return s;
}

UNIT_MAIN(config_suite)
