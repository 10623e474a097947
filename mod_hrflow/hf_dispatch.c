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

typedef enum { WAITING, RUNNING } entry_state_t;
typedef enum { DONE, RETRY, FAILED, STOPPED } entry_result_t;

typedef struct entry_t {
    char *name;
    char *key;                  /* order key, or NULL */
    const char *folder;         /* where its file is: new, retry, run */
    entry_state_t state;
    apr_time_t due;
    entry_result_t result;      /* set by the worker */
    struct entry_t *next;       /* in the job or done list */
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
    int wake[2];                    /* workers to main thread */
    int notify_fd;
} dispatcher_t;

static void entry_free(entry_t *e)
{
    free(e->name);
    free(e->key);
    free(e);
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
    entry_t *e;

    if (!hf_spool_is_event_name(name)
        || apr_hash_get(d->known, name, APR_HASH_KEY_STRING))
        return;
    apr_pool_create(&p, d->pool);
    e = calloc(1, sizeof *e);
    e->name = strdup(name);
    key = hf_spool_name_key(p, name);
    e->key = key ? strdup(key) : NULL;
    e->folder = folder;
    if (!strcmp(folder, "retry")
        && !hf_envelope_read(p, hf_spool_path(p, d->spec->dir, folder, name),
                             &env))
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
        if (de->d_name[0] != '.' && stat(file, &st) == 0
            && now - st.st_ctime > age)
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
    hf_hex_encode(digest, sizeof digest, ev->id);
    apr_cpystrn(ev->delivery_id, env->delivery_id, sizeof ev->delivery_id);
    return NULL;
}

/* Keeps the last try's status and output beside a failed event. */
static void write_failure(apr_pool_t *p, const char *dir, const char *name,
                          const char *status, const hf_run_result_t *res)
{
    const char *base = apr_pstrmemdup(p, name, strlen(name) - 5);

    hf_spool_write(hf_spool_path(p, dir, "failed",
                                 apr_pstrcat(p, base, ".status", NULL)),
                   apr_pstrcat(p, status, "\n", NULL), strlen(status) + 1, 0);
    hf_spool_write(hf_spool_path(p, dir, "failed",
                                 apr_pstrcat(p, base, ".output", NULL)),
                   res && res->output ? res->output : "",
                   res && res->output ? res->output_len : 0, 0);
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
        if ((err = hf_spool_rewrite(p, s->dir, env, "run", "retry")))
            hf_log(s->log, HF_LOG_ERR, p, "spool: %s", err);
        e->due = env->next_attempt;
        e->folder = "retry";
        return RETRY;
    }
    write_failure(p, s->dir, env->name, result, res);
    if ((err = hf_spool_rewrite(p, s->dir, env, "run", "failed")))
        hf_log(s->log, HF_LOG_ERR, p, "spool: %s", err);
    hf_log(s->log, HF_LOG_ERR, p,
           "event %s type=%s delivery=%s failed %d time%s: moved to %s",
           env->event_id ? env->event_id : "?", env->type, env->delivery_id,
           env->attempt, env->attempt == 1 ? "" : "s",
           hf_spool_path(p, s->dir, "failed", env->name));
    return FAILED;
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
        && rename(hf_spool_path(p, s->dir, e->folder, e->name), path) != 0)
        return errno == ENOENT ? DONE : STOPPED;  /* requeued or removed */
    e->folder = "run";
    if ((err = hf_envelope_read(p, path, &env))
        || (err = event_of(p, &env, &ev))) {
        env.name = e->name;
        hf_log(s->log, HF_LOG_ERR, p, "spool: %s: %s", e->name, err);
        write_failure(p, s->dir, e->name, err, NULL);
        rename(path, hf_spool_path(p, s->dir, "failed", e->name));
        return FAILED;
    }
    env.name = e->name;
    env.attempt++;
    batch.count = env.count;
    batch.verified = env.verified;
    batch.attempt = env.attempt;
    hf_event_vars(p, &ev, &batch, s->log);
    hf_run_event(p, &ev, env.argv, env.timeout, env.attempt, s->stop, s->log,
                 &res);
    if (res.cancelled)
        return STOPPED;       /* stays in run/: runs again at next start */
    if (hf_run_succeeded(&res)) {
        /* Kept a while for the administrator; deleting at once would also
         * slow the creation of new event files during a burst. */
        if (rename(path, hf_spool_path(p, s->dir, "done", e->name)) != 0)
            unlink(path);
        return DONE;
    }
    return after_failure(p, d, &env, e, hf_run_describe(p, &res), &res);
}

static void *APR_THREAD_FUNC worker(apr_thread_t *t, void *data)
{
    dispatcher_t *d = data;
    apr_pool_t *p;

    apr_pool_create(&p, NULL);
    for (;;) {
        entry_t *e;
        apr_thread_mutex_lock(d->lock);
        while (!d->jobs && !*d->spec->stop)
            apr_thread_cond_wait(d->work, d->lock);
        if (!(e = d->jobs)) {
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
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* ---- the main thread --------------------------------------------------- */

static void remove_entry(dispatcher_t *d, entry_t *e)
{
    entry_t **v = (entry_t **)d->pending->elts;
    int i, n = d->pending->nelts;

    for (i = 0; i < n && v[i] != e; i++)
        ;
    if (i < n) {
        memmove(v + i, v + i + 1, (size_t)(n - i - 1) * sizeof *v);
        d->pending->nelts--;
    }
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
        if (e->result == RETRY || e->result == STOPPED)
            e->state = WAITING;
        else
            remove_entry(d, e);
    }
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

    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (*fd < 0) {
        hf_log(s->log, HF_LOG_ERR, p, "spool: cannot open %s: %s", path,
               strerror(errno));
        return -1;
    }
    while (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        if (*s->stop)
            return -1;
        if (waited++ == 0)
            hf_log(s->log, HF_LOG_WARNING, p, "spool %s: waiting for the "
                   "previous dispatcher to let go of it", s->dir);
        apr_sleep(apr_time_from_msec(100));
    }
    return 0;
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
        hf_log(s->log, HF_LOG_ERR, p, "spool %s: cannot watch new/: %s",
               s->dir, strerror(errno));
        return -1;
    }
    apr_thread_mutex_create(&d->lock, APR_THREAD_MUTEX_DEFAULT, p);
    apr_thread_cond_create(&d->work, p);
    purge(p, s->dir, "tmp", STALE_TMP_SEC);
    scan_folder(d, "run");      /* was running when the last one stopped */
    scan_folder(d, "retry");
    scan_folder(d, "new");
    return 0;
}

int hf_dispatch_run(apr_pool_t *p, const hf_dispatch_spec_t *s)
{
    dispatcher_t d;
    apr_thread_t **threads;
    apr_time_t last_purge = 0;
    int lock_fd, i;

    memset(&d, 0, sizeof d);
    d.spec = s;
    if (lock_spool(p, s, &lock_fd) != 0)
        return -1;
    write_pid(p, s->dir);
    if (setup(p, &d) != 0)
        return -1;
    hf_log(s->log, HF_LOG_NOTICE, p,
           "spool %s: dispatcher %ld started: %d waiting, %d at once, "
           "%d retries", s->dir, (long)getpid(), d.pending->nelts,
           s->concurrency, s->retry);
    threads = apr_pcalloc(p, (apr_size_t)s->concurrency * sizeof *threads);
    for (i = 0; i < s->concurrency; i++)
        apr_thread_create(&threads[i], NULL, worker, &d, p);
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
        poll(fds, s->wake_fd >= 0 ? 3 : 2, timed ? 250 : 1000);
        read_notifications(&d);
        collect(&d);
    }
    apr_thread_mutex_lock(d.lock);
    apr_thread_cond_broadcast(d.work);
    apr_thread_mutex_unlock(d.lock);
    for (i = 0; i < s->concurrency; i++) {
        apr_status_t rv;
        apr_thread_join(&rv, threads[i]);
    }
    hf_log(s->log, HF_LOG_NOTICE, p, "spool %s: dispatcher %ld stopped",
           s->dir, (long)getpid());
    close(lock_fd);
    return 0;
}
