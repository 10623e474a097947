/*
 * hf_store_spool.c - the spool's folders (SPEC section 6) as a store of
 * the scheduler (hf_sched.h), and hf_dispatch_run, the dispatcher that
 * runs their handlers outside any request.
 *
 * The main thread learns of events by a scan at start, then inotify on
 * new/; an event's file name gives its order (names sort by arrival) and
 * its key's tag, so only an event waiting for a retry is read (for its
 * time).  Every change of state is a rename in the spool, so a crash at
 * any moment leaves each event in exactly one folder: at the next start,
 * run/ holds what was running (run again, the cut try counted), new/ and
 * retry/ what was waiting.
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include "hf_sched.h"

#define STALE_TMP_SEC 3600   /* a tmp/ file this old belongs to nobody */
#define DONE_KEEP_SEC 600    /* succeeded events stay in done/ this long */
#define PURGE_EVERY_SEC 60

/* One event's file.  Its fields change only in the call about it (main
 * thread when it is added, then the worker that tries it). */
typedef struct {
    char *name;                 /* NAME.json: its order */
    const char *folder;         /* where its file is: new, retry, run */
    int attempt;                /* tries made, as known here (the file may
                                 * lag behind when storage fails) */
    int interrupted;            /* found in run/ at start: a try was cut */
    int unstored;               /* an outcome could not be stored */
    int failure_logged;         /* its last try's failure was logged */
} spool_event_t;

struct hf_store_spool_t {
    const char *dir;
    const hf_logger_t *log;
    atomic_int *stop;
    apr_pool_t *pool;
    hf_sched_t *sched;
    apr_hash_t *known;          /* name -> spool_event_t *, main thread */
    int lock_fd;
    int notify_fd;
    int rescan;                 /* an event was missed: scan again */
    apr_time_t last_purge;
};

/* Deletes the files of a folder that have been there longer than age:
 * half-written ones in tmp/, succeeded ones in done/. */
static void purge(apr_pool_t *p, const char *dir, const char *folder,
                  apr_time_t age)
{
    const char *path = hf_spool_path(p, dir, folder, NULL);
    apr_time_t now = apr_time_sec(apr_time_now());
    DIR *dh = opendir(path);
    struct dirent *de;
    struct stat st;

    while (dh && (de = readdir(dh))) {
        const char *file = apr_pstrcat(p, path, "/", de->d_name, NULL);
        if (de->d_name[0] != '.' && lstat(file, &st) == 0
            && now - st.st_ctime > age
            /* a success mark whose file could not leave run/ yet */
            && (strcmp(folder, "done") != 0
                || lstat(hf_spool_path(p, dir, "run", de->d_name), &st) != 0))
            unlink(file);
    }
    if (dh)
        closedir(dh);
}

/* Holds DIR/dispatcher.lock: one dispatcher per spool, even when an old
 * one outlives its server.  0, or -1 when asked to stop first. */
static int lock_spool(apr_pool_t *p, const hf_store_spool_t *s, int *fd)
{
    const char *path = apr_pstrcat(p, s->dir, "/dispatcher.lock", NULL);
    int waited = 0;

    *fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (*fd < 0) {
        hf_log(s->log, HF_LOG_ERR, p,
               HFLOGNO(00407) "spool: cannot open %s: %s", path,
               strerror(errno));
        return -1;
    }
    while (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        if (*s->stop)
            return -1;
        if (waited++ == 0)
            hf_log(s->log, HF_LOG_WARNING, p,
                   HFLOGNO(00408) "spool %s: waiting for the "
                   "previous dispatcher to let go of it", s->dir);
        apr_sleep(apr_time_from_msec(100));
    }
    return 0;
}

/* The session of a process, from /proc/PID/stat: "PID (COMM) STATE PPID
 * PGRP SESSION ..."; COMM may hold anything, so read after its last
 * parenthesis.  -1 when it cannot be read. */
static long session_of(const char *pid)
{
    char path[300], text[1024], *end;
    long ppid, pgrp, sid;
    char state;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    if (!(end = strrchr(text, ')'))
        || sscanf(end + 1, " %c %ld %ld %ld", &state, &ppid, &pgrp, &sid) != 4)
        return -1;
    return sid;
}

/* Is pid a live process?  A zombie is dead: a dispatcher killed while its
 * parent (Apache, itself killed) cannot reap it stays one, and its
 * handlers must still be ended.  A live process with that pid is the old
 * dispatcher, or (no member of its session left to hold the number) an
 * unrelated process that reused it, maybe leading a session of its own:
 * either way nothing is killed.  Killing the session unconditionally once
 * the lock is held would risk exactly that unrelated session. */
static int lives(pid_t pid)
{
    char path[64], text[512], state = '?';
    const char *end;
    ssize_t n;
    int fd;

    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno != ENOENT;
    n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return 1;
    text[n] = '\0';
    if ((end = strrchr(text, ')')))
        sscanf(end + 1, " %c", &state);
    return state != 'Z' && state != 'X';
}

/* Handlers must not outlive their dispatcher.  Each dispatcher leads a
 * session of its own, which its handlers and everything they start join
 * (each handler leading a process group in it); a dispatcher killed with
 * -9 leaves them running.  The next one, once it holds the lock (the old
 * one is gone), kills what remains of the old session before it runs the
 * events of run/ again.  A session id stays reserved while any member
 * lives, so when no process has the old dispatcher's pid, every process of
 * that session is one of its leftovers. */
static void end_old_session(apr_pool_t *p, const hf_store_spool_t *s)
{
    char *text;
    apr_size_t len;
    long old;
    DIR *proc;
    struct dirent *de;
    int killed = 0;

    if (hf_spool_read_file(p, apr_pstrcat(p, s->dir, "/dispatcher.pid",
                                          NULL), &text, &len) != NULL
        || (old = strtol(text, NULL, 10)) <= 1 || old == (long)getpid()
        || lives((pid_t)old) || !(proc = opendir("/proc")))
        return;
    while ((de = readdir(proc)))
        if (de->d_name[0] >= '1' && de->d_name[0] <= '9'
            && session_of(de->d_name) == old
            && kill((pid_t)strtol(de->d_name, NULL, 10), SIGKILL) == 0)
            killed++;
    closedir(proc);
    if (killed)
        hf_log(s->log, HF_LOG_WARNING, p,
               HFLOGNO(00409) "spool %s: killed %d process%s "
               "left by dispatcher %ld", s->dir, killed,
               killed == 1 ? "" : "es", old);
}

static void write_pid(apr_pool_t *p, const char *dir)
{
    const char *text = apr_psprintf(p, "%ld\n", (long)getpid());

    hf_spool_write(apr_pstrcat(p, dir, "/dispatcher.pid", NULL), text,
                   strlen(text), 0);
}


/* ---- storing outcomes (worker threads, or the main thread again) ------- */

/* Keeps the last try's status and output beside a failed event; 0 or -1. */
static int write_failure(apr_pool_t *p, const char *dir, const char *name,
                         const hf_sched_outcome_t *o)
{
    const char *base = apr_pstrmemdup(p, name, strlen(name) - 5);
    const char *status = apr_pstrcat(p, o->status ? o->status : "failed",
                                     "\n", NULL);

    if (hf_spool_write(hf_spool_path(p, dir, "failed",
                                     apr_pstrcat(p, base, ".status", NULL)),
                       status, strlen(status), 0) != 0
        || hf_spool_write(hf_spool_path(p, dir, "failed",
                                        apr_pstrcat(p, base, ".output",
                                                    NULL)),
                          o->output ? o->output : "", o->output_len, 0) != 0)
        return -1;
    return 0;
}

/* Stores a success: run/NAME to done/.  When run/ cannot change, a link
 * in done/ records the success durably (a restart then removes the file
 * instead of running it) and the removal is tried again later.  NULL, or
 * what failed. */
static const char *store_done(apr_pool_t *p, const char *dir, const char *name)
{
    const char *run = hf_spool_path(p, dir, "run", name);
    const char *done = hf_spool_path(p, dir, "done", name);
    struct stat st;

    if (lstat(done, &st) == 0)          /* the mark is there already */
        return unlink(run) == 0 || errno == ENOENT
                   ? NULL : apr_psprintf(p, "cannot remove %s: %s", run,
                                         strerror(errno));
    /* Kept a while for the administrator; deleting at once would also slow
     * the creation of new event files during a burst. */
    if (rename(run, done) == 0 || errno == ENOENT)
        return NULL;
    if (link(run, done) != 0)
        return apr_psprintf(p, "cannot move %s to done/: %s", run,
                            strerror(errno));
    hf_spool_sync_dir(hf_spool_path(p, dir, "done", NULL));
    return unlink(run) == 0 ? NULL
                            : apr_psprintf(p, "cannot remove %s: %s", run,
                                           strerror(errno));
}

/* Stores a final failure: the status files, then run/NAME to failed/ with
 * its tries and last result written in.  NULL, or what failed. */
static const char *store_failed(apr_pool_t *p, const char *dir,
                                const char *name, const hf_sched_outcome_t *o)
{
    const char *run = hf_spool_path(p, dir, "run", name);
    hf_envelope_t env;
    struct stat st;

    if (lstat(run, &st) != 0 && errno == ENOENT)
        return NULL;                    /* removed by the administrator */
    if (write_failure(p, dir, name, o) != 0)
        return apr_psprintf(p, "cannot write the status of %s in failed/: "
                            "%s", name, strerror(errno));
    if (hf_spool_envelope_read_owned(p, run, (long)geteuid(), &env) != NULL) {
        /* Unreadable (or not ours: never rewritten as ours): moved as it
         * is, the status says why. */
        if (rename(run, hf_spool_path(p, dir, "failed", name)) != 0)
            return apr_psprintf(p, "cannot move %s to failed/: %s", run,
                                strerror(errno));
        hf_spool_sync_dir(hf_spool_path(p, dir, "failed", NULL));
        return NULL;
    }
    env.name = name;
    env.attempt = o->attempt;
    env.last_result = o->status;
    return hf_spool_rewrite(p, dir, &env, "run", "failed");
}

/* A retry: run/NAME rewritten into retry/ with its time.  When that cannot
 * be written, the file stays in run/ as it was; the retry is kept by the
 * scheduler and runs from there, its tries counted here. */
static void store_retry(apr_pool_t *p, const hf_store_spool_t *st,
                        spool_event_t *ev, const hf_sched_outcome_t *o)
{
    const char *run = hf_spool_path(p, st->dir, "run", ev->name);
    const char *err;
    hf_envelope_t env;

    ev->attempt = o->attempt;
    if (!(err = hf_spool_envelope_read_owned(p, run, (long)geteuid(),
                                             &env))) {
        env.name = ev->name;
        env.attempt = o->attempt;
        env.next_attempt = o->due;
        env.last_result = o->status;
        if (!(err = hf_spool_rewrite(p, st->dir, &env, "run", "retry"))) {
            ev->folder = "retry";
            return;
        }
    }
    else
        err = apr_psprintf(p, "cannot read %s: %s", run, err);
    hf_log(st->log, HF_LOG_ERR, p,
           HFLOGNO(00403) "spool: %s (retried from run/)", err);
    ev->folder = "run";
}

static int spool_record(void *ctx, void *data, int slot,
                        const hf_sched_outcome_t *o, apr_pool_t *p)
{
    hf_store_spool_t *st = ctx;
    spool_event_t *ev = data;
    const char *err = NULL;

    (void)slot;
    switch (o->verdict) {
    case HF_SCHED_RETRY:
        store_retry(p, st, ev, o);
        return HF_SCHED_OK;
    case HF_SCHED_DONE:
        err = store_done(p, st->dir, ev->name);
        break;
    case HF_SCHED_FAILED:
        if (!ev->failure_logged) {
            hf_log(st->log, HF_LOG_ERR, p, HFLOGNO(00401) "%s: moved to %s",
                   o->what ? o->what : ev->name,
                   hf_spool_path(p, st->dir, "failed", ev->name));
            ev->failure_logged = 1;
        }
        err = store_failed(p, st->dir, ev->name, o);
        break;
    }
    if (!err)
        return HF_SCHED_OK;
    if (ev->unstored)
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00406) "spool: %s (tried again later)", err);
    else if (o->verdict == HF_SCHED_DONE)
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00405) "spool: %s (tried again later)", err);
    else
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00402) "spool: %s (tried again later)", err);
    ev->unstored = 1;
    return HF_SCHED_LATER;
}

/* ---- a try begins (worker threads) ------------------------------------- */

static int spool_begin(void *ctx, void *data, int slot, apr_pool_t *p,
                       hf_sched_job_t *job, const char **error)
{
    hf_store_spool_t *st = ctx;
    spool_event_t *ev = data;
    const char *path = hf_spool_path(p, st->dir, "run", ev->name), *err;
    hf_envelope_t *env = &job->env;

    (void)slot;
    if (strcmp(ev->folder, "run") != 0
        && rename(hf_spool_path(p, st->dir, ev->folder, ev->name), path)
               != 0) {
        if (errno == ENOENT)
            return HF_SCHED_GONE;       /* requeued or removed */
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00404) "spool: cannot move %s to run/: %s "
               "(tried again later)",
               hf_spool_path(p, st->dir, ev->folder, ev->name),
               strerror(errno));
        return HF_SCHED_LATER;
    }
    ev->folder = "run";
    ev->failure_logged = 0;
    job->label = apr_pstrcat(p, "spool: ", ev->name, NULL);
    /* The handler it names runs as us: only a file we wrote is trusted,
     * whatever the folder's mode became since startup. */
    if ((err = hf_spool_envelope_read_owned(p, path, (long)geteuid(), env))) {
        *error = err;
        return HF_SCHED_BAD;
    }
    env->name = ev->name;
    /* A try cut short by a crash or a restart counts. */
    if (env->attempt < ev->attempt)
        env->attempt = ev->attempt;
    env->attempt += 1 + ev->interrupted;
    ev->interrupted = 0;
    ev->attempt = env->attempt;
    return HF_SCHED_OK;
}

/* ---- learning of events (main thread) ---------------------------------- */

/* Adds the event file name found in folder.  Its name tells its order;
 * only an event waiting for a retry is read, for its time. */
static void add_event(hf_store_spool_t *st, const char *folder,
                      const char *name)
{
    apr_pool_t *p;
    const char *key;
    hf_envelope_t env;
    struct stat sb;
    spool_event_t *ev;
    apr_time_t due = 0;
    int rc, marked = 0;

    if (!hf_spool_is_event_name(name)
        || apr_hash_get(st->known, name, APR_HASH_KEY_STRING))
        return;
    apr_pool_create(&p, st->pool);
    key = hf_spool_name_key(p, name);
    if ((ev = calloc(1, sizeof *ev)) && (ev->name = strdup(name))) {
        ev->folder = folder;
        ev->interrupted = !strcmp(folder, "run");
        if (ev->interrupted
            && lstat(hf_spool_path(p, st->dir, "done", name), &sb) == 0) {
            /* It succeeded, and a link in done/ says so: its file could
             * not leave run/ then.  Never run again: only remove it. */
            hf_sched_outcome_t o = {HF_SCHED_DONE, 0, 0, NULL, NULL, 0, NULL};
            ev->unstored = 1;
            marked = 1;
            rc = hf_sched_add_outcome(st->sched, key, ev->name, ev, &o);
        }
        else {
            if (!strcmp(folder, "retry")
                && !hf_spool_envelope_read(
                    p, hf_spool_path(p, st->dir, folder, name), &env))
                due = env.next_attempt;
            rc = hf_sched_add(st->sched, key, ev->name, due, ev);
        }
        if (rc == 0) {
            apr_hash_set(st->known, ev->name, APR_HASH_KEY_STRING, ev);
            apr_pool_destroy(p);
            return;
        }
        /* A failed hf_sched_add_outcome has released it already. */
        if (!marked) {
            free(ev->name);
            free(ev);
        }
        ev = NULL;
    }
    if (ev) {
        free(ev->name);
        free(ev);
    }
    /* Its file stays where it is: looked for again in a while. */
    hf_log(st->log, HF_LOG_ERR, p,
           HFLOGNO(00413) "spool %s: out of memory for %s/%s (tried again "
           "later)", st->dir, folder, name);
    apr_pool_destroy(p);
    st->rescan = 1;
}

typedef struct {
    const char *name;
    const char *folder;
    int rank;                   /* run/ first: a name in two folders (a
                                 * crash between link and unlink) is the
                                 * one that was running */
} found_t;

static int found_cmp(const void *a, const void *b)
{
    const found_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : x->rank - y->rank;
}

/* Adds the events of run/, retry/ and new/ (or only new/), in their order,
 * so that the scheduler appends each after those of its key. */
static void scan(hf_store_spool_t *st, int only_new)
{
    static const char *const folders[] = {"run", "retry", "new"};
    apr_pool_t *p;
    apr_array_header_t *found;
    int f, i;

    apr_pool_create(&p, st->pool);
    found = apr_array_make(p, 1024, sizeof(found_t));
    for (f = only_new ? 2 : 0; f < 3; f++) {
        apr_array_header_t *names = hf_spool_list(p, st->dir, folders[f]);
        for (i = 0; names && i < names->nelts; i++) {
            found_t *x = apr_array_push(found);
            x->name = APR_ARRAY_IDX(names, i, char *);
            x->folder = folders[f];
            x->rank = f;
        }
    }
    qsort(found->elts, (size_t)found->nelts, sizeof(found_t), found_cmp);
    for (i = 0; i < found->nelts; i++) {
        found_t *x = &APR_ARRAY_IDX(found, i, found_t);
        add_event(st, x->folder, x->name);
    }
    apr_pool_destroy(p);
}

static void read_notifications(hf_store_spool_t *st)
{
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    while ((n = read(st->notify_fd, buf, sizeof buf)) > 0) {
        char *c = buf;
        while (c < buf + n) {
            struct inotify_event *ie = (struct inotify_event *)c;
            if (ie->mask & IN_Q_OVERFLOW)
                scan(st, 1);
            else if (ie->len)
                add_event(st, "new", ie->name);
            c += sizeof *ie + ie->len;
        }
    }
}

static apr_time_t spool_poll(void *ctx, hf_sched_t *s, int want,
                             apr_pool_t *p)
{
    hf_store_spool_t *st = ctx;

    (void)s;
    (void)want;                 /* every waiting event is listed */
    read_notifications(st);
    if (st->rescan) {
        st->rescan = 0;
        scan(st, 0);
    }
    if (apr_time_now() - st->last_purge > apr_time_from_sec(PURGE_EVERY_SEC)) {
        purge(p, st->dir, "done", DONE_KEEP_SEC);
        st->last_purge = apr_time_now();
    }
    return st->last_purge + apr_time_from_sec(PURGE_EVERY_SEC) + 1;
}

static int spool_fd(void *ctx)
{
    return ((hf_store_spool_t *)ctx)->notify_fd;
}

static void spool_release(void *ctx, void *data)
{
    hf_store_spool_t *st = ctx;
    spool_event_t *ev = data;

    apr_hash_set(st->known, ev->name, APR_HASH_KEY_STRING, NULL);
    free(ev->name);
    free(ev);
}

/* ---- start and stop (main thread) -------------------------------------- */

static int spool_open(void *ctx, hf_sched_t *s, apr_pool_t *p)
{
    hf_store_spool_t *st = ctx;
    const hf_sched_spec_t *spec = hf_sched_spec(s);

    st->sched = s;
    st->pool = p;
    st->known = apr_hash_make(p);
    st->notify_fd = -1;
    if (lock_spool(p, st, &st->lock_fd) != 0)
        return -1;
    end_old_session(p, st);
    hf_run_die_with_us();
    write_pid(p, st->dir);
    st->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (st->notify_fd < 0
        || inotify_add_watch(st->notify_fd,
                             hf_spool_path(p, st->dir, "new", NULL),
                             IN_MOVED_TO | IN_CREATE) < 0) {
        hf_log(st->log, HF_LOG_ERR, p,
               HFLOGNO(00410) "spool %s: cannot watch new/: %s",
               st->dir, strerror(errno));
        if (st->notify_fd >= 0)
            close(st->notify_fd);
        close(st->lock_fd);
        return -1;
    }
    purge(p, st->dir, "tmp", STALE_TMP_SEC);
    scan(st, 0);
    hf_log(st->log, HF_LOG_NOTICE, p,
           HFLOGNO(00411)
           "spool %s: dispatcher %ld started: %d waiting, %d at once, "
           "%d retries", st->dir, (long)getpid(), hf_sched_count(s),
           spec->concurrency, spec->retry);
    return 0;
}

static void spool_close(void *ctx, apr_pool_t *p)
{
    hf_store_spool_t *st = ctx;

    close(st->notify_fd);
    hf_log(st->log, HF_LOG_NOTICE, p,
           HFLOGNO(00412) "spool %s: dispatcher %ld stopped",
           st->dir, (long)getpid());
    close(st->lock_fd);
}

const hf_store_t hf_store_spool = {
    "spool", 1, spool_open, spool_fd, spool_poll, spool_begin,
    spool_record, spool_release, spool_close
};

hf_store_spool_t *hf_store_spool_create(apr_pool_t *p, const char *dir,
                                        const hf_logger_t *log,
                                        atomic_int *stop)
{
    hf_store_spool_t *st = apr_pcalloc(p, sizeof *st);

    st->dir = dir;
    st->log = log;
    st->stop = stop;
    st->lock_fd = st->notify_fd = -1;
    return st;
}

int hf_dispatch_run(apr_pool_t *p, const hf_dispatch_spec_t *s)
{
    return hf_dispatch_run_target(p, s, &hf_target_argv, NULL);
}

int hf_dispatch_run_target(apr_pool_t *p, const hf_dispatch_spec_t *s,
                           const hf_target_t *target, void *target_ctx)
{
    hf_sched_spec_t spec;

    memset(&spec, 0, sizeof spec);
    spec.name = apr_pstrcat(p, "spool ", s->dir, NULL);
    spec.concurrency = s->concurrency;
    spec.retry = s->retry;
    spec.retry_delay = s->retry_delay;
    spec.log = s->log;
    spec.stop = s->stop;
    spec.wake_fd = s->wake_fd;
    spec.store = &hf_store_spool;
    spec.store_ctx = hf_store_spool_create(p, s->dir, s->log, s->stop);
    spec.target = target;
    spec.target_ctx = target_ctx;
    return hf_sched_run(p, &spec);
}
