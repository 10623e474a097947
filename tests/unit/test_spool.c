/* test_spool.c - the spool's files: envelope round trip, order keys,
 * retry delays, and accepting a batch with group commit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <apr_thread_proc.h>
#include "unit.h"

static const char *make_dir(void)
{
    char *tmpl = apr_pstrdup(pool, "/tmp/hrflow-unit-XXXXXX");

    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    ck_assert_ptr_null(hf_spool_prepare(pool, tmpl, -1, -1));
    return tmpl;
}

static void remove_dir(const char *dir)
{
    int i;

    for (i = 0; hf_spool_states[i]; i++) {
        const char *sub = hf_spool_path(pool, dir, hf_spool_states[i], NULL);
        DIR *d = opendir(sub);
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (de->d_name[0] != '.')
                unlink(apr_pstrcat(pool, sub, "/", de->d_name, NULL));
        if (d)
            closedir(d);
        rmdir(sub);
    }
    rmdir(dir);
}

START_TEST(envelope_round_trip_keeps_event_bytes)
{
    static const char *const argv[] = {"/bin/echo", "a \"quoted\" arg", NULL};
    const char *event = "{ \"type\" : \"job.storing.update\",\n"
                        "  \"job\": {\"key\": \"\\\"event\\\":x\"} }";
    hf_envelope_t in, out;
    apr_size_t len;
    char *text;

    memset(&in, 0, sizeof in);
    in.delivery_id = "0123456789abcdef0123456789abcdef";
    in.event_id = "ff";
    in.type = "job.storing.update";
    in.order_key = "job:\"event\":x";
    in.received = 1795371791298842;
    in.attempt = 2;
    in.next_attempt = 1795371799000000;
    in.last_result = "exit 3";
    in.index = 1;
    in.count = 3;
    in.verified = 1;
    in.timeout = 30;
    in.argv = argv;
    in.text = event;
    in.len = strlen(event);
    text = hf_spool_envelope_encode(pool, &in, &len);
    ck_assert_ptr_null(hf_spool_envelope_parse(pool, text, len, &out));
    ck_assert_str_eq(out.delivery_id, in.delivery_id);
    ck_assert_str_eq(out.order_key, in.order_key);
    ck_assert_str_eq(out.last_result, "exit 3");
    ck_assert_int_eq(out.attempt, 2);
    ck_assert(out.next_attempt == in.next_attempt);
    ck_assert_int_eq(out.index, 1);
    ck_assert_int_eq(out.count, 3);
    ck_assert_int_eq(out.verified, 1);
    ck_assert_str_eq(out.argv[1], argv[1]);
    ck_assert_ptr_null(out.argv[2]);
    ck_assert_uint_eq(out.len, in.len);
    ck_assert_int_eq(memcmp(out.text, event, in.len), 0);
}
END_TEST

/* Found by tests/fuzz/fuzz_envelope.c: a file the dispatcher parsed must
 * read back the same once rewritten for a retry, whatever its ids hold. */
/* Found by tests/fuzz/fuzz_envelope.c: an "event": nested in another
 * member is not the event. */
START_TEST(envelope_nested_event_key_refused)
{
    const char *file = "{\"delivery_id\":\"d\",\"type\":\"a.b.c\","
                       "\"handler\":[\"x\"],\n\"evenT\":{\"event\": \"a\"}}\n";
    hf_envelope_t e;

    ck_assert_str_eq(hf_spool_envelope_parse(pool, file, strlen(file), &e),
                     "no event member at the end");
}
END_TEST

/* The event is the file's last member named "event", found by a JSON scan:
 * not the text after the first "event": in the file, which may stand in a
 * member's name or in a member before it. */
START_TEST(envelope_event_member_found_by_a_json_scan)
{
    const char *named = "{\"delivery_id\":\"d\",\"type\":\"a.b.c\","
                        "\"handler\":[\"x\"],\n"
                        "\"x\\\"event\":{\"type\":\"a.b.c\"}}\n";
    const char *nested = "{\"delivery_id\":\"d\",\"type\":\"a.b.c\","
                         "\"x\":{\"event\":1},\"handler\":[\"x\"],\n"
                         "\"event\":{\"type\":\"a.b.c\"}}\n";
    hf_envelope_t e;

    ck_assert_str_eq(hf_spool_envelope_parse(pool, named, strlen(named), &e),
                     "no event member at the end");
    ck_assert_ptr_null(
        hf_spool_envelope_parse(pool, nested, strlen(nested), &e));
    ck_assert_str_eq(e.type, "a.b.c");
    ck_assert_str_eq(e.argv[0], "x");
    ck_assert_uint_eq(e.len, strlen("{\"type\":\"a.b.c\"}"));
    ck_assert_int_eq(memcmp(e.text, "{\"type\":\"a.b.c\"}", e.len), 0);
}
END_TEST

START_TEST(envelope_rewrite_keeps_odd_ids)
{
    static const char *const argv[] = {"/bin/true", NULL};
    hf_envelope_t in, out;
    apr_size_t len;
    char *text;

    memset(&in, 0, sizeof in);
    in.delivery_id = "0123\",\"x\":\"y";
    in.event_id = NULL;
    in.type = "job.storing.update";
    in.count = 1;
    in.timeout = 30;
    in.argv = argv;
    in.text = "{\"type\":\"job.storing.update\"}";
    in.len = strlen(in.text);
    text = hf_spool_envelope_encode(pool, &in, &len);
    ck_assert_ptr_null(hf_spool_envelope_parse(pool, text, len, &out));
    ck_assert_str_eq(out.delivery_id, in.delivery_id);
    ck_assert_ptr_null(out.event_id);
}
END_TEST

START_TEST(envelope_parse_refuses_damage)
{
    hf_envelope_t e;
    const char *no_handler = "{\"delivery_id\":\"d\",\"type\":\"a.b.c\","
                             "\"handler\":[],\n\"event\":{}}\n";
    const char *cut = "{\"delivery_id\":\"d\",\"type\":\"a.b.c\","
                      "\"handler\":[\"/x\"],\n\"event\":{\"a\":";

    ck_assert_ptr_nonnull(
        hf_spool_envelope_parse(pool, no_handler, strlen(no_handler), &e));
    ck_assert_ptr_nonnull(hf_spool_envelope_parse(pool, cut, strlen(cut), &e));
    ck_assert_ptr_nonnull(hf_spool_envelope_parse(pool, "", 0, &e));
}
END_TEST

/* An event "levels" deep, the event object included. */
static const char *deep_event(int levels)
{
    char *event = apr_pstrdup(pool, "{\"type\":\"a.b.c\",\"x\":");
    int i;

    for (i = 1; i < levels; i++)
        event = apr_pstrcat(pool, event, "[", NULL);
    event = apr_pstrcat(pool, event, "0", NULL);
    for (i = 1; i < levels; i++)
        event = apr_pstrcat(pool, event, "]", NULL);
    return apr_pstrcat(pool, event, "}", NULL);
}

/* The deepest event a body may carry still parses inside its envelope, and
 * its own text parses again for the handler. */
START_TEST(envelope_holds_the_deepest_event)
{
    static const char *const argv[] = {"/bin/true", NULL};
    const char *event = NULL, *err;
    apr_array_header_t *evs;
    hf_envelope_t in, out;
    apr_size_t len;
    char *text;
    int levels;

    /* The deepest the receiver accepts, as it stands. */
    for (levels = 1; levels < 100; levels++) {
        const char *e = deep_event(levels);
        if (hf_events_from_json(pool, e, strlen(e), 100, &evs, &err) != HF_OK)
            break;
        event = e;
    }
    memset(&in, 0, sizeof in);
    in.delivery_id = "0123456789abcdef0123456789abcdef";
    in.type = "a.b.c";
    in.count = 1;
    in.timeout = 30;
    in.argv = argv;
    in.text = event;
    in.len = strlen(event);
    text = hf_spool_envelope_encode(pool, &in, &len);
    err = hf_spool_envelope_parse(pool, text, len, &out);
    ck_assert_msg(err == NULL, "%s", err);
    ck_assert_ptr_nonnull(hf_json_parse(pool, out.text, out.len, &err));
    /* And the README's limit is that depth. */
    ck_assert_int_eq(levels - 1, HF_JSON_MAX_DEPTH);
}
END_TEST

START_TEST(retry_delays_double_up_to_an_hour)
{
    ck_assert(hf_spool_retry_delay(1, 1) == apr_time_from_sec(1));
    ck_assert(hf_spool_retry_delay(2, 1) == apr_time_from_sec(2));
    ck_assert(hf_spool_retry_delay(5, 1) == apr_time_from_sec(16));
    ck_assert(hf_spool_retry_delay(5, 30) == apr_time_from_sec(480));
    ck_assert(hf_spool_retry_delay(40, 30) == apr_time_from_sec(3600));
}
END_TEST

static apr_array_header_t *events_of(const char *json)
{
    apr_array_header_t *events;
    const char *err;

    ck_assert_int_eq(hf_events_from_json(pool, json, strlen(json), 100,
                                         &events, &err), HF_OK);
    return events;
}

START_TEST(order_key_from_profile_or_job)
{
    apr_array_header_t *ev = events_of(
        "[{\"type\":\"a.b.c\",\"profile\":{\"key\":\"p1\"}},"
        "{\"type\":\"a.b.c\",\"job\":{\"key\":\"j1\"}},"
        "{\"type\":\"a.b.c\",\"profile\":\"not an object\"},"
        "{\"type\":\"a.b.c\"}]");

    ck_assert_str_eq(hf_spool_order_key(pool, APR_ARRAY_IDX(ev, 0,
                                        hf_event_t *)), "profile:p1");
    ck_assert_str_eq(hf_spool_order_key(pool, APR_ARRAY_IDX(ev, 1,
                                        hf_event_t *)), "job:j1");
    ck_assert_ptr_null(hf_spool_order_key(pool, APR_ARRAY_IDX(ev, 2,
                                          hf_event_t *)));
    ck_assert_ptr_null(hf_spool_order_key(pool, APR_ARRAY_IDX(ev, 3,
                                          hf_event_t *)));
}
END_TEST

/* A key longer than HF_ORDER_KEY_MAX is kept as its digest: bounded, the
 * same for the same key, different for another. */
START_TEST(order_key_long_kept_as_digest)
{
    char *a = apr_palloc(pool, 5000), *json;
    const char *ka, *kb, *kshort;
    apr_array_header_t *ev;

    memset(a, 'x', 4999);
    a[4999] = '\0';
    json = apr_psprintf(pool,
        "[{\"type\":\"a.b.c\",\"profile\":{\"key\":\"%s\"}},"
        "{\"type\":\"a.b.c\",\"profile\":{\"key\":\"%s\"}},"
        "{\"type\":\"a.b.c\",\"profile\":{\"key\":\"%sy\"}},"
        "{\"type\":\"a.b.c\",\"job\":{\"key\":\"%s\"}}]",
        a, a, a, a + 4999 - HF_ORDER_KEY_MAX);
    ev = events_of(json);
    ka = hf_spool_order_key(pool, APR_ARRAY_IDX(ev, 0, hf_event_t *));
    kb = hf_spool_order_key(pool, APR_ARRAY_IDX(ev, 2, hf_event_t *));
    kshort = hf_spool_order_key(pool, APR_ARRAY_IDX(ev, 3, hf_event_t *));
    ck_assert_uint_eq(strlen(ka), strlen("profile:sha256:") + 64);
    ck_assert_int_eq(strncmp(ka, "profile:sha256:", 15), 0);
    ck_assert_str_eq(ka, hf_spool_order_key(pool, APR_ARRAY_IDX(
                                                ev, 1, hf_event_t *)));
    ck_assert_str_ne(ka, kb);
    /* HF_ORDER_KEY_MAX bytes exactly: kept as it is. */
    ck_assert_str_eq(kshort, apr_pstrcat(pool, "job:",
                                         a + 4999 - HF_ORDER_KEY_MAX, NULL));
}
END_TEST

START_TEST(accept_writes_routed_events_to_new)
{
    const char *dir = make_dir();
    hf_config_t *cfg = hf_config_create(pool);
    hf_config_ctx_t ctx = {pool, NULL};
    char *handler[] = {"job.*", "/bin/true", NULL};
    hf_committer_t *c = hf_committer_create(pool, dir);
    hf_outcome_t out;
    hf_envelope_t e;
    apr_uint64_t groups, events;
    DIR *d;
    struct dirent *de;
    int files = 0;

    cfg->spool = dir;
    ck_assert_ptr_null(hf_config_apply(
        &ctx, cfg, hf_config_directive_find("HrflowHandler"), 2, handler));
    memset(&out, 0, sizeof out);
    out.events = events_of("[{\"type\":\"job.a.b\"},{\"type\":\"profile.a.b\"},"
                           "{\"type\":\"job.c.d\"}]");
    hf_commit_accept(pool, cfg, c, &out, NULL);
    ck_assert_int_eq(out.rc, HF_OK);
    ck_assert_int_eq(out.queued, 2);
    ck_assert_int_eq(out.ignored, 1);
    ck_assert_int_eq(hf_receive_outcome_http_status(&out), 202);
    ck_assert_int_eq(hf_spool_count(pool, dir, "new"), 2);
    ck_assert_int_eq(hf_spool_count(pool, dir, "tmp"), 0);
    hf_committer_stats(c, &groups, &events);
    ck_assert(events == 2 && groups == 1);  /* one request: one group */
    d = opendir(hf_spool_path(pool, dir, "new", NULL));
    while ((de = readdir(d)))
        if (hf_spool_is_event_name(de->d_name)) {
            ck_assert_ptr_null(hf_spool_envelope_read(
                pool, hf_spool_path(pool, dir, "new", de->d_name), &e));
            ck_assert_str_eq(e.argv[0], "/bin/true");
            ck_assert_int_eq(e.count, 3);
            files++;
        }
    closedir(d);
    ck_assert_int_eq(files, 2);
    remove_dir(dir);
}
END_TEST

/* An event whose spool file would exceed what the dispatcher reads back is
 * refused (413), never answered 202: here a handler argument that JSON
 * quoting makes six times longer. */
START_TEST(accept_refuses_a_file_the_spool_cannot_read_back)
{
    const char *dir = make_dir();
    hf_config_t *cfg = hf_config_create(pool);
    hf_config_ctx_t ctx = {pool, NULL};
    apr_size_t n = HF_SPOOL_FILE_MAX / 6 + 1;
    char *arg = apr_palloc(pool, n + 1);
    char *handler[] = {"*", "/bin/true", arg, NULL};
    hf_outcome_t out;

    memset(arg, '\001', n);
    arg[n] = '\0';
    cfg->spool = dir;
    ck_assert_ptr_null(hf_config_apply(
        &ctx, cfg, hf_config_directive_find("HrflowHandler"), 3, handler));
    memset(&out, 0, sizeof out);
    out.events = events_of("{\"type\":\"job.a.b\"}");
    hf_commit_accept(pool, cfg, hf_committer_create(pool, dir), &out, NULL);
    ck_assert_int_eq(out.rc, HF_E_TOO_LARGE);
    ck_assert_int_eq(hf_receive_outcome_http_status(&out), 413);
    ck_assert_int_eq(out.queued, 0);
    ck_assert_int_eq(hf_spool_count(pool, dir, "new"), 0);
    ck_assert_int_eq(hf_spool_count(pool, dir, "tmp"), 0);
    remove_dir(dir);
}
END_TEST

START_TEST(accept_into_missing_spool_is_503)
{
    hf_config_t *cfg = hf_config_create(pool);
    hf_config_ctx_t ctx = {pool, NULL};
    char *handler[] = {"*", "/bin/true", NULL};
    hf_outcome_t out;

    cfg->spool = "/nonexistent/spool";
    hf_config_apply(&ctx, cfg, hf_config_directive_find("HrflowHandler"), 2,
                    handler);
    memset(&out, 0, sizeof out);
    out.events = events_of("{\"type\":\"job.a.b\"}");
    hf_commit_accept(pool, cfg, hf_committer_create(pool, cfg->spool), &out,
                     NULL);
    ck_assert_int_eq(out.rc, HF_E_SPOOL);
    ck_assert_str_eq(out.error, "spool_unavailable");
    ck_assert_int_eq(hf_receive_outcome_http_status(&out), 503);
}
END_TEST

/* A folder outside the spool, and a file in it: where a link would lead. */
static const char *make_decoy(void)
{
    char *tmpl = apr_pstrdup(pool, "/tmp/hrflow-decoy-XXXXXX");
    FILE *f;

    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    f = fopen(apr_pstrcat(pool, tmpl, "/file", NULL), "w");
    fputs("original\n", f);
    fclose(f);
    return tmpl;
}

static void remove_decoy(const char *decoy)
{
    unlink(apr_pstrcat(pool, decoy, "/file", NULL));
    rmdir(decoy);
}

static int contains(const char *s, const char *part)
{
    return s && strstr(s, part) != NULL;
}

START_TEST(prepare_refuses_a_linked_state_folder)
{
    const char *dir = make_dir(), *decoy = make_decoy();
    const char *done = hf_spool_path(pool, dir, "done", NULL);
    const char *err;

    ck_assert_int_eq(rmdir(done), 0);
    ck_assert_int_eq(symlink(decoy, done), 0);
    err = hf_spool_prepare(pool, dir, -1, -1);
    ck_assert_msg(contains(err, apr_pstrcat(pool, done, " is a symbolic link",
                                            NULL)), "%s", err);
    err = hf_spool_inspect(pool, dir, -1);
    ck_assert_msg(contains(err, "is a symbolic link"), "%s", err);
    unlink(done);
    ck_assert_ptr_null(hf_spool_prepare(pool, dir, -1, -1));
    remove_dir(dir);
    remove_decoy(decoy);
}
END_TEST

START_TEST(prepare_refuses_a_link_or_fifo_in_a_state_folder)
{
    const char *dir = make_dir(), *decoy = make_decoy();
    const char *link = hf_spool_path(pool, dir, "failed", "x.status");
    const char *fifo = hf_spool_path(pool, dir, "tmp", "y.json");
    const char *err;

    ck_assert_int_eq(symlink(apr_pstrcat(pool, decoy, "/file", NULL), link),
                     0);
    err = hf_spool_prepare(pool, dir, -1, -1);
    ck_assert_msg(contains(err, apr_pstrcat(pool, link, " is not a regular "
                                            "file", NULL)), "%s", err);
    unlink(link);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    err = hf_spool_prepare(pool, dir, -1, -1);
    ck_assert_msg(contains(err, "y.json is not a regular file"), "%s", err);
    remove_dir(dir);
    remove_decoy(decoy);
}
END_TEST

START_TEST(spool_files_are_never_read_or_written_through_a_link)
{
    const char *dir = make_dir(), *decoy = make_decoy();
    const char *target = apr_pstrcat(pool, decoy, "/file", NULL);
    const char *link = hf_spool_path(pool, dir, "tmp", "x.json");
    const char *fifo = hf_spool_path(pool, dir, "failed", "y.output");
    char *text;
    apr_size_t len;
    struct stat st;

    ck_assert_int_eq(symlink(target, link), 0);
    ck_assert_ptr_nonnull(hf_spool_read_file(pool, link, &text, &len));
    ck_assert_int_eq(hf_spool_write(link, "new\n", 4, 0), 0);
    ck_assert_ptr_null(hf_spool_read_file(pool, target, &text, &len));
    ck_assert_str_eq(text, "original\n");
    ck_assert_int_eq(lstat(link, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    /* A FIFO is refused at once, not waited on. */
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_ptr_nonnull(hf_spool_read_file(pool, fifo, &text, &len));
    remove_dir(dir);
    remove_decoy(decoy);
}
END_TEST

/* The spool file of an event holding n empty objects, which json-c would
 * make n hash tables of; *in is the envelope it was written from. */
static char *empty_objects_file(apr_size_t n, hf_envelope_t *in,
                                apr_size_t *len)
{
    static const char *const argv[] = {"/bin/true", NULL};
    char *event = apr_palloc(pool, 32 + 3 * n);
    apr_size_t i, at;

    at = (apr_size_t)sprintf(event, "{\"type\":\"a.b.c\",\"a\":[");
    for (i = 0; i < n; i++)
        at += (apr_size_t)sprintf(event + at, i ? ",{}" : "{}");
    strcpy(event + at, "]}");
    memset(in, 0, sizeof *in);
    in->delivery_id = "0123456789abcdef0123456789abcdef";
    in->type = "a.b.c";
    in->count = 1;
    in->timeout = 30;
    in->argv = argv;
    in->text = event;
    in->len = strlen(event);
    return hf_spool_envelope_encode(pool, in, len);
}

/* Reading a spool file checks the event's text but builds no tree of it:
 * the dispatcher builds the one tree an event costs.  An event of many
 * empty objects (each a json-c hash table) shows a tree at once. */
START_TEST(envelope_parse_builds_no_event_tree)
{
    hf_envelope_t in, out;
    struct mallinfo2 before, after;
    apr_pool_t *sub;
    apr_size_t len;
    char *text = empty_objects_file(HF_JSON_MAX_CONTAINERS - 2, &in, &len);

    apr_pool_create(&sub, pool);
    before = mallinfo2();
    ck_assert_ptr_null(hf_spool_envelope_parse(sub, text, len, &out));
    after = mallinfo2();
    ck_assert_uint_eq(out.len, in.len);
    ck_assert(memcmp(out.text, in.text, out.len) == 0);
    ck_assert_uint_lt(after.uordblks + after.hblkhd
                          - (before.uordblks + before.hblkhd),
                      1024 * 1024);
    apr_pool_destroy(sub);
}
END_TEST

/* An event over the caps is refused when read, before any tree. */
START_TEST(envelope_event_over_the_caps_refused)
{
    hf_envelope_t in, out;
    apr_size_t len;
    char *text = empty_objects_file(HF_JSON_MAX_CONTAINERS, &in, &len);

    ck_assert_ptr_nonnull(hf_spool_envelope_parse(pool, text, len, &out));
}
END_TEST

/* Events of the config's spool whose files new/ holds, each read back. */
static int readable_in_new(const char *dir)
{
    DIR *d = opendir(hf_spool_path(pool, dir, "new", NULL));
    struct dirent *de;
    hf_envelope_t e;
    int files = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        if (hf_spool_is_event_name(de->d_name)) {
            ck_assert_ptr_null(hf_spool_envelope_read(
                pool, hf_spool_path(pool, dir, "new", de->d_name), &e));
            ck_assert_str_eq(e.argv[0], "/bin/true");
            files++;
        }
    closedir(d);
    return files;
}

static hf_config_t *spool_config(const char *dir)
{
    hf_config_t *cfg = hf_config_create(pool);
    hf_config_ctx_t ctx = {pool, NULL};
    char *handler[] = {"*", "/bin/true", NULL};

    cfg->spool = dir;
    ck_assert_ptr_null(hf_config_apply(
        &ctx, cfg, hf_config_directive_find("HrflowHandler"), 2, handler));
    return cfg;
}

/* Without /proc (as under ChrootDir) an unnamed file cannot be named:
 * event files go through tmp/ instead, and the events are accepted.  The
 * child hides /proc in a mount namespace of its own. */
START_TEST(accept_without_proc_writes_through_tmp)
{
    const char *dir = make_dir();
    hf_config_t *cfg = spool_config(dir);
    int status;
    pid_t child = fork();

    ck_assert_int_ge(child, 0);
    if (child == 0) {
        hf_outcome_t out;
        struct stat st;
        if (unshare(CLONE_NEWNS) != 0
            && unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            _exit(77);
        /* Names for valgrind: a change of propagation ignores them. */
        if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0
            || mount("none", "/proc", "tmpfs", 0, NULL) != 0)
            _exit(78);
        if (stat("/proc/self/fd", &st) == 0)
            _exit(79);
        memset(&out, 0, sizeof out);
        out.events = events_of("[{\"type\":\"job.a.b\"},"
                               "{\"type\":\"job.c.d\"}]");
        hf_commit_accept(pool, cfg, hf_committer_create(pool, dir), &out, NULL);
        /* A second request of the same process: the way is known. */
        hf_commit_accept(pool, cfg, hf_committer_create(pool, dir), &out, NULL);
        _exit(out.rc == HF_OK && out.queued == 2 ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) < 77,
                  "cannot hide /proc here (status %d)", status);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_eq(readable_in_new(dir), 4);
    ck_assert_int_eq(hf_spool_count(pool, dir, "tmp"), 0);
    remove_dir(dir);
}
END_TEST

#define ACCEPT_THREADS 8
#define ACCEPTS_PER_THREAD 25

typedef struct {
    const hf_config_t *cfg;
    hf_committer_t *committer;
    int id, accepted;
} accepter_t;

static void *APR_THREAD_FUNC accept_many(apr_thread_t *t, void *data)
{
    accepter_t *a = data;
    apr_pool_t *p;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < ACCEPTS_PER_THREAD; i++) {
        hf_outcome_t out;
        const char *err;
        char body[64];
        memset(&out, 0, sizeof out);
        /* Bodies differ, so do their delivery ids and file names. */
        snprintf(body, sizeof body, "{\"type\":\"job.a.b\",\"n\":%d}",
                 a->id * 1000 + i);
        if (hf_events_from_json(p, body, strlen(body), 100, &out.events,
                                &err) != HF_OK)
            break;
        hf_commit_accept(p, a->cfg, a->committer, &out, NULL);
        if (out.rc == HF_OK && out.queued == 1)
            a->accepted++;
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    return NULL;
}

/* Concurrent requests share group commits, and every event they were
 * answered for is in new/, whole. */
START_TEST(accept_from_many_threads_commits_every_event)
{
    const char *dir = make_dir();
    hf_config_t *cfg = spool_config(dir);
    hf_committer_t *c = hf_committer_create(pool, dir);
    apr_thread_t *threads[ACCEPT_THREADS];
    accepter_t a[ACCEPT_THREADS];
    apr_uint64_t groups, events;
    int i, accepted = 0;

    ck_assert_ptr_nonnull(c);
    for (i = 0; i < ACCEPT_THREADS; i++) {
        a[i].cfg = cfg;
        a[i].committer = c;
        a[i].id = i;
        a[i].accepted = 0;
        ck_assert_int_eq(apr_thread_create(&threads[i], NULL, accept_many,
                                           &a[i], pool), APR_SUCCESS);
    }
    for (i = 0; i < ACCEPT_THREADS; i++) {
        apr_status_t rv;
        apr_thread_join(&rv, threads[i]);
        accepted += a[i].accepted;
    }
    ck_assert_int_eq(accepted, ACCEPT_THREADS * ACCEPTS_PER_THREAD);
    ck_assert_int_eq(readable_in_new(dir), accepted);
    hf_committer_stats(c, &groups, &events);
    ck_assert_uint_eq(events, (apr_uint64_t)accepted);
    ck_assert(groups >= 1 && groups <= events);
    remove_dir(dir);
}
END_TEST

/* Whether a line that mentions what ctx points to was logged. */
static void find_line(void *ctx, int level, const char *msg)
{
    const char **wanted = ctx;

    if (*wanted && strstr(msg, *wanted))
        *wanted = NULL;
}

/* A dispatcher that cannot start its worker threads says so and returns
 * -1 (its parent starts another a little later) instead of running
 * without them.  A child limited to one process of its user (the nobody
 * user when root, whom the limit would not bind) cannot make a thread. */
START_TEST(dispatcher_without_threads_does_not_start)
{
    const char *dir = make_dir();
    atomic_int stop = 1;        /* were it to start, it would stop at once */
    int i, status;
    pid_t child;

    if (geteuid() == 0) {
        ck_assert_int_eq(chown(dir, 65534, 65534), 0);
        for (i = 0; hf_spool_states[i]; i++)
            ck_assert_int_eq(chown(hf_spool_path(pool, dir,
                                                 hf_spool_states[i], NULL),
                                   65534, 65534), 0);
    }
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        const char *wanted = "cannot start worker thread 1 of 2";
        hf_logger_t log = {find_line, &wanted, NULL};
        hf_dispatch_spec_t spec = {dir, 2, 0, 1, &log, &stop, -1};
        struct rlimit one = {1, 1};
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(77);
        if (setrlimit(RLIMIT_NPROC, &one) != 0)
            _exit(78);
        if (hf_dispatch_run(pool, &spec) != -1)
            _exit(1);
        _exit(wanted ? 2 : 0);      /* -1, and for that reason */
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status), "the dispatcher died (status %d)",
                  status);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    unlink(apr_pstrcat(pool, dir, "/dispatcher.pid", NULL));
    unlink(apr_pstrcat(pool, dir, "/dispatcher.lock", NULL));
    remove_dir(dir);
}
END_TEST

/* A file shorter than its size said (here sysfs, which gives every
 * attribute a size of a page) is not read as if whole. */
START_TEST(read_file_refuses_a_short_read)
{
    const char *path = "/sys/devices/system/cpu/online";
    struct stat st;
    char *text, buf[128];
    apr_size_t len;
    FILE *f = fopen(path, "r");
    size_t n;

    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_msg(n > 0 && (size_t)st.st_size > n,
                  "%s: size %ld, %zu bytes: not shorter", path,
                  (long)st.st_size, n);
    ck_assert_ptr_nonnull(hf_spool_read_file(pool, path, &text, &len));
}
END_TEST

static Suite *spool_suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = unit_case(s, "spool");

    tcase_set_timeout(tc, 0);   /* a 64 MiB envelope: no clock in a test */

    tcase_add_test(tc, envelope_round_trip_keeps_event_bytes);
    tcase_add_test(tc, accept_refuses_a_file_the_spool_cannot_read_back);
    tcase_add_test(tc, envelope_rewrite_keeps_odd_ids);
    tcase_add_test(tc, envelope_nested_event_key_refused);
    tcase_add_test(tc, envelope_event_member_found_by_a_json_scan);
    tcase_add_test(tc, envelope_parse_refuses_damage);
    tcase_add_test(tc, envelope_holds_the_deepest_event);
    tcase_add_test(tc, envelope_parse_builds_no_event_tree);
    tcase_add_test(tc, envelope_event_over_the_caps_refused);
    tcase_add_test(tc, retry_delays_double_up_to_an_hour);
    tcase_add_test(tc, order_key_from_profile_or_job);
    tcase_add_test(tc, order_key_long_kept_as_digest);
    tcase_add_test(tc, accept_writes_routed_events_to_new);
    tcase_add_test(tc, accept_into_missing_spool_is_503);
    tcase_add_test(tc, accept_without_proc_writes_through_tmp);
    tcase_add_test(tc, accept_from_many_threads_commits_every_event);
    tcase_add_test(tc, read_file_refuses_a_short_read);
    tcase_add_test(tc, dispatcher_without_threads_does_not_start);
    tcase_add_test(tc, prepare_refuses_a_linked_state_folder);
    tcase_add_test(tc, prepare_refuses_a_link_or_fifo_in_a_state_folder);
    tcase_add_test(tc, spool_files_are_never_read_or_written_through_a_link);
    return s;
}

UNIT_MAIN(spool_suite)
