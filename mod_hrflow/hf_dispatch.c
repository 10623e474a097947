/*
 * hf_dispatch.c - the dispatcher: runs the handlers of spooled events
 * (SPEC section 6), outside any request.
 *
 * One main thread learns of events (a scan at start, then inotify on new/),
 * decides what may run, and hands work to HrflowConcurrency worker threads,
 * each of which runs one handler at a time through hf_run.  Events that
 * share an order key (the same profile.key or job.key) run one at a time in
 * arrival order, a failed one holding back the later ones until it succeeds
 * or fails for good; the others run side by side.
 *
 * Every change of state is a rename in the spool, so a crash at any moment
 * leaves each event in exactly one folder: at the next start, run/ holds
 * what was running (run again), new/ and retry/ what was waiting.
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <poll.h>
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
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include "hrflow.h"

#define STALE_TMP_SEC 3600   /* a tmp/ file this old belongs to nobody */
#define DONE_KEEP_SEC 600    /* succeeded events stay in done/ this long */
#define PURGE_EVERY_SEC 60

#define BACKOFF_MAX_SEC 60     /* longest wait after a storage error */

typedef enum { WAITING, RUNNING } entry_state_t;
/* What a worker hands back.  BLOCKED: the spool refused to move the event
 * into run/ (try again later).  UNSTORED: the try's outcome is known but
 * could not be stored: the main thread stores it later (the event never
 * runs again meanwhile). */
typedef enum { DONE, RETRY, FAILED, STOPPED, BLOCKED, UNSTORED }
    entry_result_t;

typedef struct entry_t {
    char *name;
    char *key;                  /* order key, or NULL */
    const char *folder;         /* where its file is: new, retry, run */
    entry_state_t state;
    apr_time_t due;
    entry_result_t result;      /* set by the worker */
    struct entry_t *next;       /* in the job or done list */
    int attempt;                /* tries made, as known here (the file may
                                 * lag behind when storage fails) */
    int interrupted;            /* found in run/ at start: a try was cut */
    const char *store_to;       /* UNSTORED: "done" or "failed" */
    char *status;               /* failed: the last try's result */
    char *output;               /* and its output */
    apr_size_t output_len;
    apr_interval_time_t backoff;    /* after a storage error */
} entry_t;

typedef struct {
    const hf_dispatch_spec_t *spec;
    apr_pool_t *pool;
    apr_array_header_t *pending;    /* entry_t *, in arrival (name) order */
    apr_hash_t *known;              /* name -> entry_t * */
    int running;
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *work;
    entry_t *jobs, *done;           /* handed out / handed back */
    entry_t *unstored;              /* outcomes still to store */
    int quit;                       /* workers stop (under lock) */
    int rescan;                     /* an event was missed: scan again */
    int wake[2];                    /* workers to main thread */
    int notify_fd;
} dispatcher_t;

static void entry_free(entry_t *e)
{
    free(e->name);
    free(e->key);
    free(e->status);
    free(e->output);
    free(e);
}

/* The next wait after a storage error: 1 s, doubling, at most a minute. */
static apr_time_t backoff(entry_t *e)
{
    e->backoff = e->backoff ? e->backoff * 2 : apr_time_from_sec(1);
    if (e->backoff > apr_time_from_sec(BACKOFF_MAX_SEC))
        e->backoff = apr_time_from_sec(BACKOFF_MAX_SEC);
    return apr_time_now() + e->backoff;
}

/* Keeps pending in arrival order: events mostly come last, so the search
 * starts from the end. */
static void insert_in_order(dispatcher_t *d, entry_t *e)
{
    entry_t **v;
    int lo = 0, hi = d->pending->nelts;

    APR_ARRAY_PUSH(d->pending, entry_t *) = e;
    v = (entry_t **)d->pending->elts;
    if (hi == 0 || strcmp(v[hi - 1]->name, e->name) < 0)
        return;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(v[mid]->name, e->name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(v + lo + 1, v + lo,
            (size_t)(d->pending->nelts - 1 - lo) * sizeof *v);
    v[lo] = e;
}

/* Adds the event file name found in folder.  Its name tells its order;
 * only an event waiting for a retry is read, for its time. */
static void add_event(dispatcher_t *d, const char *folder, const char *name)
{
    apr_pool_t *p;
    const char *key;
    hf_envelope_t env;
    struct stat st;
    entry_t *e;

    if (!hf_spool_is_event_name(name)
        || apr_hash_get(d->known, name, APR_HASH_KEY_STRING))
        return;
    apr_pool_create(&p, d->pool);
    key = hf_spool_name_key(p, name);
    if (!(e = calloc(1, sizeof *e)) || !(e->name = strdup(name))
        || (key && !(e->key = strdup(key)))) {
        /* Its file stays where it is: looked for again in a while. */
        hf_log(d->spec->log, HF_LOG_ERR, p,
               HFLOGNO(00413) "spool %s: out of memory for "
               "%s/%s (tried again later)", d->spec->dir, folder, name);
        if (e)
            entry_free(e);
        apr_pool_destroy(p);
        d->rescan = 1;
        return;
    }
    e->folder = folder;
    e->interrupted = !strcmp(folder, "run");
    if (e->interrupted
        && lstat(hf_spool_path(p, d->spec->dir, "done", name), &st) == 0) {
        /* It succeeded, and a link in done/ says so: its file could not
         * leave run/ then.  Never run again: only remove it. */
        apr_pool_destroy(p);
        e->store_to = "done";
        e->next = d->unstored;
        d->unstored = e;
        apr_hash_set(d->known, e->name, APR_HASH_KEY_STRING, e);
        return;
    }
    if (!strcmp(folder, "retry")
        && !hf_spool_envelope_read(
            p, hf_spool_path(p, d->spec->dir, folder, name), &env))
        e->due = env.next_attempt;
    apr_pool_destroy(p);
    insert_in_order(d, e);
    apr_hash_set(d->known, e->name, APR_HASH_KEY_STRING, e);
}

static void scan_folder(dispatcher_t *d, const char *folder)
{
    apr_pool_t *p;
    apr_array_header_t *names;
    int i;

    apr_pool_create(&p, d->pool);
    names = hf_spool_list(p, d->spec->dir, folder);
    for (i = 0; names && i < names->nelts; i++)
        add_event(d, folder, APR_ARRAY_IDX(names, i, char *));
    apr_pool_destroy(p);
}

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

/* ---- the worker threads ------------------------------------------------ */

/* The event of an envelope, as hf_env_build and hf_run_event want it. */
static const char *event_of(apr_pool_t *p, const hf_envelope_t *env,
                            hf_event_t *ev)
{
    const char *err = NULL;
    unsigned char digest[32];

    memset(ev, 0, sizeof *ev);
    ev->json = hf_json_parse(p, env->text, env->len, &err);
    if (!ev->json || !hf_json_is_object(ev->json))
        return err ? err : "the event is not a JSON object";
    ev->text = env->text;
    ev->len = env->len;
    ev->type = env->type;
    ev->index = env->index;
    hf_sha256(env->text, env->len, digest);
    hf_codec_hex_encode(digest, sizeof digest, ev->id);
    apr_cpystrn(ev->delivery_id, env->delivery_id, sizeof ev->delivery_id);
    return NULL;
}

/* Keeps the last try's status and output beside a failed event; 0 or -1. */
static int write_failure(apr_pool_t *p, const char *dir, const entry_t *e)
{
    const char *base = apr_pstrmemdup(p, e->name, strlen(e->name) - 5);
    const char *status = apr_pstrcat(p, e->status, "\n", NULL);

    if (hf_spool_write(hf_spool_path(p, dir, "failed",
                                     apr_pstrcat(p, base, ".status", NULL)),
                       status, strlen(status), 0) != 0
        || hf_spool_write(hf_spool_path(p, dir, "failed",
                                        apr_pstrcat(p, base, ".output",
                                                    NULL)),
                          e->output ? e->output : "", e->output_len, 0) != 0)
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
static const char *store_failed(apr_pool_t *p, const char *dir, entry_t *e)
{
    const char *run = hf_spool_path(p, dir, "run", e->name);
    hf_envelope_t env;
    struct stat st;

    if (lstat(run, &st) != 0 && errno == ENOENT)
        return NULL;                    /* removed by the administrator */
    if (write_failure(p, dir, e) != 0)
        return apr_psprintf(p, "cannot write the status of %s in failed/: "
                            "%s", e->name, strerror(errno));
    if (hf_spool_envelope_read_owned(p, run, (long)geteuid(), &env) != NULL) {
        /* Unreadable (or not ours: never rewritten as ours): moved as it
         * is, the status says why. */
        if (rename(run, hf_spool_path(p, dir, "failed", e->name)) != 0)
            return apr_psprintf(p, "cannot move %s to failed/: %s", run,
                                strerror(errno));
        hf_spool_sync_dir(hf_spool_path(p, dir, "failed", NULL));
        return NULL;
    }
    env.name = e->name;
    env.attempt = e->attempt;
    env.last_result = e->status;
    return hf_spool_rewrite(p, dir, &env, "run", "failed");
}

static void keep_outcome(entry_t *e, const char *status,
                         const hf_run_result_t *res)
{
    free(e->status);
    free(e->output);
    e->status = strdup(status);
    e->output = NULL;
    e->output_len = 0;
    if (res && res->output && res->output_len) {
        e->output = malloc(res->output_len);
        if (e->output) {
            memcpy(e->output, res->output, res->output_len);
            e->output_len = res->output_len;
        }
    }
}

/* Gives up on an event: into failed/, or UNSTORED when that cannot be
 * written now. */
static entry_result_t give_up(apr_pool_t *p, const dispatcher_t *d,
                              entry_t *e, const char *status,
                              const hf_run_result_t *res, const char *what)
{
    const hf_dispatch_spec_t *s = d->spec;
    const char *err;

    keep_outcome(e, status, res);
    hf_log(s->log, HF_LOG_ERR, p, HFLOGNO(00401) "%s: moved to %s", what,
           hf_spool_path(p, s->dir, "failed", e->name));
    if (!(err = store_failed(p, s->dir, e)))
        return FAILED;
    hf_log(s->log, HF_LOG_ERR, p,
           HFLOGNO(00402) "spool: %s (tried again later)", err);
    e->store_to = "failed";
    return UNSTORED;
}

/* After a failed try: wait and retry, or give up into failed/. */
static entry_result_t after_failure(apr_pool_t *p, const dispatcher_t *d,
                                    hf_envelope_t *env, entry_t *e,
                                    const char *result,
                                    const hf_run_result_t *res)
{
    const hf_dispatch_spec_t *s = d->spec;
    const char *err;

    env->last_result = result;
    if (env->attempt <= s->retry) {
        env->next_attempt = apr_time_now()
                            + hf_spool_retry_delay(env->attempt,
                                                   s->retry_delay);
        e->due = env->next_attempt;
        e->folder = "retry";
        if ((err = hf_spool_rewrite(p, s->dir, env, "run", "retry"))) {
            /* The file stays in run/ as it was; the retry is kept here
             * and runs from there, its tries counted here. */
            hf_log(s->log, HF_LOG_ERR, p,
                   HFLOGNO(00403) "spool: %s (retried from run/)",
                   err);
            e->folder = "run";
        }
        return RETRY;
    }
    return give_up(p, d, e, result, res,
                   apr_psprintf(p, "event %s type=%s delivery=%s failed %d "
                                "time%s", env->event_id ? env->event_id : "?",
                                env->type, env->delivery_id, env->attempt,
                                env->attempt == 1 ? "" : "s"));
}

static entry_result_t run_entry(apr_pool_t *p, dispatcher_t *d, entry_t *e)
{
    const hf_dispatch_spec_t *s = d->spec;
    const char *path = hf_spool_path(p, s->dir, "run", e->name), *err;
    hf_envelope_t env;
    hf_event_t ev;
    hf_batch_t batch;
    hf_run_result_t res;

    if (strcmp(e->folder, "run") != 0
        && rename(hf_spool_path(p, s->dir, e->folder, e->name), path) != 0) {
        if (errno == ENOENT)
            return DONE;                /* requeued or removed */
        hf_log(s->log, HF_LOG_ERR, p,
               HFLOGNO(00404) "spool: cannot move %s to run/: %s "
               "(tried again later)",
               hf_spool_path(p, s->dir, e->folder, e->name), strerror(errno));
        return BLOCKED;
    }
    e->folder = "run";
    /* The handler it names runs as us: only a file we wrote is trusted,
     * whatever the folder's mode became since startup. */
    if ((err = hf_spool_envelope_read_owned(p, path, (long)geteuid(), &env))
        || (err = event_of(p, &env, &ev))) {
        e->attempt = 0;
        return give_up(p, d, e, apr_pstrcat(p, "unreadable: ", err, NULL),
                       NULL, apr_psprintf(p, "spool: %s: %s", e->name, err));
    }
    env.name = e->name;
    /* A try cut short by a crash or a restart counts. */
    if (env.attempt < e->attempt)
        env.attempt = e->attempt;
    env.attempt += 1 + e->interrupted;
    e->interrupted = 0;
    e->attempt = env.attempt;
    batch.count = env.count;
    batch.verified = env.verified;
    batch.attempt = env.attempt;
    hf_event_vars(p, &ev, &batch, s->log);
    hf_run_event(p, &ev, env.argv, env.timeout, env.attempt, s->stop, s->log,
                 &res);
    if (res.cancelled)
        return STOPPED;       /* stays in run/: runs again at next start */
    if (hf_run_succeeded(&res)) {
        if (!(err = store_done(p, s->dir, e->name)))
            return DONE;
        hf_log(s->log, HF_LOG_ERR, p,
               HFLOGNO(00405) "spool: %s (tried again later)", err);
        e->store_to = "done";
        return UNSTORED;
    }
    return after_failure(p, d, &env, e,
                         res.started ? hf_run_describe(p, &res)
                             : apr_pstrcat(p, "not started: ", res.error,
                                           NULL),
                         &res);
}

static void *APR_THREAD_FUNC worker(apr_thread_t *t, void *data)
{
    dispatcher_t *d = data;
    apr_pool_t *p;

    apr_pool_create(&p, NULL);
    for (;;) {
        entry_t *e;
        apr_thread_mutex_lock(d->lock);
        while (!d->jobs && !*d->spec->stop && !d->quit)
            apr_thread_cond_wait(d->work, d->lock);
        if (d->quit || !(e = d->jobs)) {
            apr_thread_mutex_unlock(d->lock);
            break;
        }
        d->jobs = e->next;
        apr_thread_mutex_unlock(d->lock);
        e->result = run_entry(p, d, e);
        apr_pool_clear(p);
        apr_thread_mutex_lock(d->lock);
        e->next = d->done;
        d->done = e;
        apr_thread_mutex_unlock(d->lock);
        if (write(d->wake[1], "", 1) < 0) {
            /* the pipe is full: the main thread is awake anyway */
        }
    }
    apr_pool_destroy(p);
    /* A plain return, not apr_thread_exit(): pthread_exit() unwinds past
     * the frames' epilogues, which leaves AddressSanitizer's poisoning of
     * this stack behind (a false report when the thread ends, with httpd's
     * -fstack-protector-strong); nobody reads this thread's status. */
    return NULL;
}

/* ---- the main thread --------------------------------------------------- */

/* Takes e out of the schedule (it stays known). */
static void unlist_entry(dispatcher_t *d, entry_t *e)
{
    entry_t **v = (entry_t **)d->pending->elts;
    int i, n = d->pending->nelts;

    for (i = 0; i < n && v[i] != e; i++)
        ;
    if (i < n) {
        memmove(v + i, v + i + 1, (size_t)(n - i - 1) * sizeof *v);
        d->pending->nelts--;
    }
}

static void remove_entry(dispatcher_t *d, entry_t *e)
{
    unlist_entry(d, e);
    apr_hash_set(d->known, e->name, APR_HASH_KEY_STRING, NULL);
    entry_free(e);
}

/* Takes back what the workers finished. */
static void collect(dispatcher_t *d)
{
    entry_t *e, *next;
    char buf[256];

    while (read(d->wake[0], buf, sizeof buf) > 0)
        ;
    apr_thread_mutex_lock(d->lock);
    e = d->done;
    d->done = NULL;
    apr_thread_mutex_unlock(d->lock);
    for (; e; e = next) {
        next = e->next;
        d->running--;
        e->state = WAITING;
        if (e->result == BLOCKED)
            e->due = backoff(e);
        else
            e->backoff = 0;
        if (e->result == UNSTORED) {
            unlist_entry(d, e);
            e->due = backoff(e);
            e->next = d->unstored;
            d->unstored = e;
        }
        else if (e->result != RETRY && e->result != STOPPED
                 && e->result != BLOCKED)
            remove_entry(d, e);
    }
}

/* Tries again to store the outcomes that could not be stored, each after
 * its backoff; returns whether some are left. */
static int store_outcomes(dispatcher_t *d, apr_pool_t *p)
{
    const hf_dispatch_spec_t *s = d->spec;
    apr_time_t now = apr_time_now();
    entry_t **at = &d->unstored;

    while (*at) {
        entry_t *e = *at;
        const char *err;
        if (e->due > now) {
            at = &e->next;
            continue;
        }
        err = !strcmp(e->store_to, "done") ? store_done(p, s->dir, e->name)
                                           : store_failed(p, s->dir, e);
        if (!err) {
            *at = e->next;
            apr_hash_set(d->known, e->name, APR_HASH_KEY_STRING, NULL);
            entry_free(e);
            continue;
        }
        hf_log(s->log, HF_LOG_ERR, p,
               HFLOGNO(00406) "spool: %s (tried again later)", err);
        e->due = backoff(e);
        at = &e->next;
    }
    return d->unstored != NULL;
}

/* Starts what may run now; returns whether some event waits for a time. */
static int schedule(dispatcher_t *d, apr_pool_t *pass)
{
    apr_hash_t *held = apr_hash_make(pass);
    apr_time_t now = apr_time_now();
    int i, timed = 0;

    for (i = 0; i < d->pending->nelts; i++) {
        entry_t *e = APR_ARRAY_IDX(d->pending, i, entry_t *);
        if (e->key && apr_hash_get(held, e->key, APR_HASH_KEY_STRING))
            continue;                    /* an earlier one of its key waits */
        if (e->key)
            apr_hash_set(held, e->key, APR_HASH_KEY_STRING, e);
        if (e->state == RUNNING)
            continue;
        if (e->due > now) {
            timed = 1;
            continue;
        }
        if (d->running >= d->spec->concurrency)
            break;
        e->state = RUNNING;
        d->running++;
        apr_thread_mutex_lock(d->lock);
        e->next = d->jobs;
        d->jobs = e;
        apr_thread_cond_signal(d->work);
        apr_thread_mutex_unlock(d->lock);
    }
    return timed;
}

static void read_notifications(dispatcher_t *d)
{
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    while ((n = read(d->notify_fd, buf, sizeof buf)) > 0) {
        char *c = buf;
        while (c < buf + n) {
            struct inotify_event *ev = (struct inotify_event *)c;
            if (ev->mask & IN_Q_OVERFLOW)
                scan_folder(d, "new");
            else if (ev->len)
                add_event(d, "new", ev->name);
            c += sizeof *ev + ev->len;
        }
    }
}

/* Holds DIR/dispatcher.lock: one dispatcher per spool, even when an old
 * one outlives its server.  0, or -1 when asked to stop first. */
static int lock_spool(apr_pool_t *p, const hf_dispatch_spec_t *s, int *fd)
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
static void end_old_session(apr_pool_t *p, const hf_dispatch_spec_t *s)
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

static int setup(apr_pool_t *p, dispatcher_t *d)
{
    const hf_dispatch_spec_t *s = d->spec;

    d->pool = p;
    d->pending = apr_array_make(p, 1024, sizeof(entry_t *));
    d->known = apr_hash_make(p);
    if (pipe2(d->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    d->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (d->notify_fd < 0
        || inotify_add_watch(d->notify_fd,
                             hf_spool_path(p, s->dir, "new", NULL),
                             IN_MOVED_TO | IN_CREATE) < 0) {
        hf_log(s->log, HF_LOG_ERR, p,
               HFLOGNO(00410) "spool %s: cannot watch new/: %s",
               s->dir, strerror(errno));
        return -1;
    }
    if (apr_thread_mutex_create(&d->lock, APR_THREAD_MUTEX_DEFAULT, p)
            != APR_SUCCESS
        || apr_thread_cond_create(&d->work, p) != APR_SUCCESS) {
        hf_log(s->log, HF_LOG_ERR, p,
               HFLOGNO(00414) "spool %s: cannot create a lock",
               s->dir);
        return -1;
    }
    purge(p, s->dir, "tmp", STALE_TMP_SEC);
    scan_folder(d, "run");      /* was running when the last one stopped */
    scan_folder(d, "retry");
    scan_folder(d, "new");
    return 0;
}

/* Ends the first n worker threads: each finishes the handler it runs. */
static void stop_workers(dispatcher_t *d, apr_thread_t **threads, int n)
{
    int i;

    apr_thread_mutex_lock(d->lock);
    d->quit = 1;
    apr_thread_cond_broadcast(d->work);
    apr_thread_mutex_unlock(d->lock);
    for (i = 0; i < n; i++) {
        apr_status_t rv;
        apr_thread_join(&rv, threads[i]);
    }
}

int hf_dispatch_run(apr_pool_t *p, const hf_dispatch_spec_t *s)
{
    dispatcher_t d;
    apr_thread_t **threads;
    apr_time_t last_purge = 0;
    apr_status_t rv;
    char error[120];
    int lock_fd, i;

    memset(&d, 0, sizeof d);
    d.spec = s;
    if (lock_spool(p, s, &lock_fd) != 0)
        return -1;
    end_old_session(p, s);
    hf_run_die_with_us();
    write_pid(p, s->dir);
    if (setup(p, &d) != 0)
        return -1;
    hf_log(s->log, HF_LOG_NOTICE, p,
           HFLOGNO(00411)
           "spool %s: dispatcher %ld started: %d waiting, %d at once, "
           "%d retries", s->dir, (long)getpid(), d.pending->nelts,
           s->concurrency, s->retry);
    threads = apr_pcalloc(p, (apr_size_t)s->concurrency * sizeof *threads);
    for (i = 0; i < s->concurrency; i++)
        if ((rv = apr_thread_create(&threads[i], NULL, worker, &d, p))
            != APR_SUCCESS) {
            /* Fewer workers than asked for would hold events back
             * unseen: stop, and let the parent start another. */
            hf_log(s->log, HF_LOG_ERR, p,
                   HFLOGNO(00415) "spool %s: cannot start worker "
                   "thread %d of %d: %s", s->dir, i + 1, s->concurrency,
                   apr_strerror(rv, error, sizeof error));
            stop_workers(&d, threads, i);
            close(lock_fd);
            return -1;
        }
    while (!*s->stop) {
        struct pollfd fds[3] = {{d.notify_fd, POLLIN, 0},
                                {d.wake[0], POLLIN, 0},
                                {s->wake_fd, POLLIN, 0}};
        apr_pool_t *pass;
        int timed = 1;
        if (apr_time_now() - last_purge > apr_time_from_sec(PURGE_EVERY_SEC)) {
            apr_pool_create(&pass, p);
            purge(pass, s->dir, "done", DONE_KEEP_SEC);
            apr_pool_destroy(pass);
            last_purge = apr_time_now();
        }
        /* With every worker busy there is nothing to decide. */
        if (d.running < s->concurrency) {
            apr_pool_create(&pass, p);
            timed = schedule(&d, pass);
            apr_pool_destroy(pass);
        }
        if (d.unstored) {
            apr_pool_create(&pass, p);
            timed |= store_outcomes(&d, pass);
            apr_pool_destroy(pass);
        }
        if (d.rescan) {
            d.rescan = 0;
            scan_folder(&d, "run");
            scan_folder(&d, "retry");
            scan_folder(&d, "new");
        }
        poll(fds, s->wake_fd >= 0 ? 3 : 2, timed ? 250 : 1000);
        read_notifications(&d);
        collect(&d);
    }
    stop_workers(&d, threads, s->concurrency);
    hf_log(s->log, HF_LOG_NOTICE, p,
           HFLOGNO(00412) "spool %s: dispatcher %ld stopped",
           s->dir, (long)getpid());
    close(lock_fd);
    return 0;
}
