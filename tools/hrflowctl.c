/*
 * hrflowctl.c - the administrator's view of a durable spool (HrflowSpool):
 * list events by state, show one, put failed ones back in the queue.
 *
 *   hrflowctl list DIR
 *   hrflowctl show DIR ID
 *   hrflowctl requeue DIR ID... | --all
 *
 * With a queue's URL (postgresql://...) in place of DIR, the same commands
 * act on the shared queue of fleet mode, and init URL creates or upgrades
 * its schema (hrflowctl_queue.c).
 *
 * ID is a delivery id (HRFLOW_DELIVERY_ID), a file name, or the start of
 * either.  Run as root it acts as the spool's owner, so that the files it
 * writes stay readable by the dispatcher.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "hrflow.h"
#include "hrflowctl.h"
#include "config.h"

static const char *const shown[] = {"new", "run", "retry", "failed", NULL};

static int usage(FILE *f, int rc)
{
    fputs("usage: hrflowctl list DIR|URL\n"
          "       hrflowctl show DIR|URL ID\n"
          "       hrflowctl requeue DIR|URL ID... | --all\n"
          "       hrflowctl [--name NAME] [--password-file FILE] init URL\n"
          "       hrflowctl --version\n"
          "DIR is an HrflowSpool directory; ID a delivery id or file name, or\n"
          "the start of one.  URL is an HrflowQueue (postgresql://...); its\n"
          "IDs are the event numbers list shows.  --name is HrflowQueueName\n"
          "(default hrflow), --password-file HrflowQueuePasswordFile; both\n"
          "go before the command, with every command on a URL.\n", f);
    return rc;
}

/* Does name (TIME-INDEX-DELIVERY[-TAG].json) match id: the start of the
 * file name, or of its delivery id? */
static int matches(const char *name, const char *id)
{
    const char *delivery = strchr(name, '-');

    if (delivery)
        delivery = strchr(delivery + 1, '-');
    return !strncmp(name, id, strlen(id))
           || (delivery && !strncmp(delivery + 1, id, strlen(id)));
}

/* qsort hands us pointers to the array's elements, each a char *. */
static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_state(apr_pool_t *p, const char *dir, const char *state)
{
    apr_array_header_t *names = hf_spool_list(p, dir, state);
    int i;

    if (!names)
        names = apr_array_make(p, 1, sizeof(char *));
    qsort(names->elts, (size_t)names->nelts, sizeof(char *), by_name);
    printf("%s: %d\n", state, names->nelts);
    for (i = 0; i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, char *);
        hf_envelope_t e;
        const char *err =
            hf_spool_envelope_read(p, hf_spool_path(p, dir, state, name), &e);
        if (err) {
            printf("  %s  (%s)\n", hf_log_escape(p, name),
                   hf_log_escape(p, err));
            continue;
        }
        printf("  %s  %s  tries %d", hf_log_escape(p, e.delivery_id),
               hf_log_escape(p, e.type), e.attempt);
        if (e.next_attempt > apr_time_now())
            printf("  next in %" APR_TIME_T_FMT " s",
                   apr_time_sec(e.next_attempt - apr_time_now()) + 1);
        if (e.last_result)
            printf("  last: %s", hf_log_escape(p, e.last_result));
        putchar('\n');
    }
}

/* Finds the one event matching id; its state and name, or an error. */
static const char *find(apr_pool_t *p, const char *dir, const char *id,
                        const char **state, const char **name)
{
    int i, j, found = 0;

    for (i = 0; shown[i]; i++) {
        apr_array_header_t *names = hf_spool_list(p, dir, shown[i]);
        for (j = 0; names && j < names->nelts; j++)
            if (matches(APR_ARRAY_IDX(names, j, char *), id)) {
                *state = shown[i];
                *name = APR_ARRAY_IDX(names, j, char *);
                found++;
            }
    }
    if (found == 0)
        return apr_psprintf(p, "no event %s in %s", id, dir);
    if (found > 1)
        return apr_psprintf(p, "%s names %d events: give more of it", id,
                            found);
    return NULL;
}

static void print_file(apr_pool_t *p, const char *label, const char *path)
{
    char *text;
    apr_size_t len;

    if (hf_spool_read_file(p, path, &text, &len) == NULL) {
        apr_size_t i;
        char out[HF_ESCAPED_MAX];
        /* Handler output and spool files are anyone's bytes: no control
         * character reaches root's terminal raw. */
        printf("%s", label);
        for (i = 0; i < len; i++)
            fwrite(out, 1, (size_t)hf_log_escape_byte((unsigned char)text[i],
                                                      1, out), stdout);
        if (len && text[len - 1] != '\n')
            putchar('\n');
    }
}

static int show(apr_pool_t *p, const char *dir, const char *id)
{
    const char *state, *name, *err = find(p, dir, id, &state, &name), *base;

    if (err)
        return fprintf(stderr, "hrflowctl: %s\n", hf_log_escape(p, err)), 1;
    printf("state: %s\nfile: %s\n", state,
           hf_log_escape(p, hf_spool_path(p, dir, state, name)));
    print_file(p, "", hf_spool_path(p, dir, state, name));
    base = apr_pstrmemdup(p, name, strlen(name) - 5);
    print_file(p, "last status: ", hf_spool_path(p, dir, "failed",
                                   apr_pstrcat(p, base, ".status", NULL)));
    print_file(p, "last output:\n", hf_spool_path(p, dir, "failed",
                                     apr_pstrcat(p, base, ".output", NULL)));
    return 0;
}

/* failed/NAME back to new/, as if it had just arrived. */
static int requeue_one(apr_pool_t *p, const char *dir, const char *name)
{
    hf_envelope_t e;
    const char *err =
        hf_spool_envelope_read(p, hf_spool_path(p, dir, "failed", name), &e);
    const char *base = apr_pstrmemdup(p, name, strlen(name) - 5);

    if (!err) {
        e.name = name;
        e.attempt = 0;
        e.next_attempt = 0;
        err = hf_spool_rewrite(p, dir, &e, "failed", "new");
    }
    if (err)
        return fprintf(stderr, "hrflowctl: %s\n", hf_log_escape(p, err)), 1;
    unlink(hf_spool_path(p, dir, "failed", apr_pstrcat(p, base, ".status",
                                                       NULL)));
    unlink(hf_spool_path(p, dir, "failed", apr_pstrcat(p, base, ".output",
                                                       NULL)));
    printf("requeued %s\n", hf_log_escape(p, e.delivery_id));
    return 0;
}

static int requeue(apr_pool_t *p, const char *dir, int argc,
                   const char *const *ids)
{
    int i, rc = 0;

    if (argc == 1 && !strcmp(ids[0], "--all")) {
        apr_array_header_t *names = hf_spool_list(p, dir, "failed");
        if (!names)
            return fprintf(stderr, "hrflowctl: %s: %s\n", dir,
                           strerror(errno)), 1;
        for (i = 0; i < names->nelts; i++)
            rc |= requeue_one(p, dir, APR_ARRAY_IDX(names, i, char *));
        return rc;
    }
    for (i = 0; i < argc; i++) {
        const char *state, *name, *err = find(p, dir, ids[i], &state, &name);
        if (!err && strcmp(state, "failed") != 0)
            err = apr_psprintf(p, "%s is in %s/, not failed/", ids[i], state);
        if (err) {
            fprintf(stderr, "hrflowctl: %s\n", hf_log_escape(p, err));
            rc = 1;
            continue;
        }
        rc |= requeue_one(p, dir, name);
    }
    return rc;
}

/* Root acts as the spool's owner, entirely: its user, its group, and only
 * its supplementary groups, so that the dispatcher can read what we write
 * and so that nothing in the spool (which that user controls) can make us
 * read or write what that user could not. */
static int become_owner(const char *dir)
{
    struct stat st;
    struct passwd *pw;
    gid_t gid;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fprintf(stderr, "hrflowctl: %s is not a spool directory\n",
                       dir), -1;
    if (geteuid() != 0 || st.st_uid == 0)
        return 0;
    gid = st.st_gid;
    pw = getpwuid(st.st_uid);
    if ((pw ? initgroups(pw->pw_name, gid) : setgroups(1, &gid)) != 0
        || setgid(gid) != 0 || setuid(st.st_uid) != 0
        || getuid() != st.st_uid || geteuid() != st.st_uid
        || getegid() != gid || setuid(0) == 0)
        return fprintf(stderr, "hrflowctl: cannot act as the owner of %s: "
                       "%s\n", dir, strerror(errno)), -1;
    return 0;
}

/* Options before the command; the index of the command, or -1. */
static int read_options(int argc, const char *const *argv,
                        hrflowctl_opts_t *o)
{
    int i = 1;

    while (i + 1 < argc && !strncmp(argv[i], "--", 2)) {
        if (!strcmp(argv[i], "--name"))
            o->name = argv[i + 1];
        else if (!strcmp(argv[i], "--password-file"))
            o->password_file = argv[i + 1];
        else
            return -1;
        i += 2;
    }
    return i;
}

/* A command on a queue's URL. */
static int on_queue(apr_pool_t *p, const hrflowctl_opts_t *o, int argc,
                    const char *const *argv)
{
#ifdef HAVE_LIBPQ
    int rc = hrflowctl_queue(p, o, argv[0], argv[1], argc - 2, argv + 2);
    return rc == 2 ? usage(stderr, 2) : rc;
#else
    fputs("hrflowctl: this hrflowctl was built without fleet mode (libpq): "
          "it knows only spool folders\n", stderr);
    return 1;
#endif
}

int main(int argc, const char *const *argv)
{
    hrflowctl_opts_t opts = {NULL, NULL};
    apr_pool_t *p;
    int rc, first;

    if (argc == 2 && !strcmp(argv[1], "--version"))
        return printf("hrflowctl (mod_hrflow) %s\n", PACKAGE_VERSION), 0;
    if (argc == 2 && !strcmp(argv[1], "--help"))
        return usage(stdout, 0);
    first = read_options(argc, argv, &opts);
    if (first < 0 || argc - first < 2)
        return usage(stderr, 2);
    apr_app_initialize(&argc, &argv, NULL);
    apr_pool_create(&p, NULL);
    if (hrflowctl_is_url(argv[first + 1])) {
        rc = on_queue(p, &opts, argc - first, argv + first);
        apr_pool_destroy(p);
        apr_terminate();
        return rc;
    }
    if (first != 1 || argc < 3)
        return usage(stderr, 2);
    if (become_owner(argv[2]) != 0)
        return 1;
    if (!strcmp(argv[1], "list") && argc == 3) {
        int i;
        for (i = 0; shown[i]; i++)
            list_state(p, argv[2], shown[i]);
        rc = 0;
    }
    else if (!strcmp(argv[1], "show") && argc == 4)
        rc = show(p, argv[2], argv[3]);
    else if (!strcmp(argv[1], "requeue") && argc >= 4)
        rc = requeue(p, argv[2], argc - 3, argv + 3);
    else
        rc = usage(stderr, 2);
    apr_pool_destroy(p);
    apr_terminate();
    return rc;
}
