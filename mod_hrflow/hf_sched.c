/*
 * hf_sched.c - the scheduler of hf_sched.h: per-key order, concurrency,
 * retries and backoff, outcomes recorded later, for any store and target.
 *
 * Every event it knows is an item.  Items of one order key form a FIFO
 * (its key's queue); only a queue's head may run.  A head that may run now
 * sits on the ready list; one that waits for a time (a retry, a backoff,
 * an outcome to record again) in a heap by time.  Taking in, starting and
 * finishing an event are each a constant number of list operations and a
 * logarithmic heap step, whatever the backlog.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include "hf_sched.h"

#define BACKOFF_MAX_SEC 60     /* longest wait after a storage error */
#define WAIT_MAX_MS 1000       /* longest poll: a lost wake-up costs this */
#define NOT_IN_HEAP ((apr_size_t)-1)

typedef enum {
    WAITING,                    /* may run when head and due */
    RUNNING,                    /* handed to a worker */
    UNSTORED                    /* its outcome is to be recorded again */
} item_state_t;

/* What a worker hands back. */
typedef enum {
    R_RECORDED,                 /* done or failed, or gone: forget it */
    R_RETRY,                    /* a retry, recorded */
    R_BLOCKED,                  /* could not begin: again after a backoff */
    R_UNSTORED,                 /* outcome kept in the item, to record */
    R_STOPPED                   /* cancelled: nothing recorded */
} item_result_t;

typedef struct keyq_t keyq_t;
typedef struct item_t item_t;

struct item_t {
    void *data;                 /* the store's */
    const char *order;          /* the store's, or NULL */
    keyq_t *q;                  /* its key's queue, or NULL */
    item_t *prev, *next;        /* in its key's queue */
    item_t *rprev, *rnext;      /* in the ready list */
    item_t *all_prev, *all_next;    /* every item, to release them at the
                                     * end */
    item_t *link;               /* in the job or finished list */
    apr_time_t due;
    apr_size_t heap_at;         /* NOT_IN_HEAP, or its index */
    item_state_t state;
    int ready;                  /* on the ready list */
    int started;                /* has been handed to a worker */
    item_result_t result;       /* set by the worker */
    apr_time_t retry_due;       /* R_RETRY: when */
    apr_interval_time_t backoff;
    hf_sched_outcome_t out;     /* UNSTORED: what to record (strings
                                 * malloc'd) */
};

struct keyq_t {
    char *key;
    item_t *head, *tail;
};

struct hf_sched_t {
    const hf_sched_spec_t *spec;
    apr_pool_t *pool;
    apr_hash_t *keys;           /* key -> keyq_t * */
    item_t *all;
    int count;
    item_t *ready_head, *ready_tail;
    int ready_n;
    item_t **heap;
    apr_size_t heap_n, heap_size;
    int running;
    apr_thread_mutex_t *lock;   /* guards what follows */
    apr_thread_cond_t *work;
    item_t *jobs, *jobs_tail;   /* handed out, in order */
    item_t *finished;           /* handed back */
    int quit;
    int closing;                /* releasing everything: nothing to arm */
    int next_slot;
    int wake[2];                /* workers to main thread */
};

/* ---- the heap of items waiting for a time ------------------------------ */

static void heap_set(hf_sched_t *s, apr_size_t i, item_t *it)
{
    s->heap[i] = it;
    it->heap_at = i;
}

static void heap_up(hf_sched_t *s, apr_size_t i)
{
    item_t *it = s->heap[i];

    while (i > 0 && s->heap[(i - 1) / 2]->due > it->due) {
        heap_set(s, i, s->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(s, i, it);
}

static void heap_down(hf_sched_t *s, apr_size_t i)
{
    item_t *it = s->heap[i];

    for (;;) {
        apr_size_t c = 2 * i + 1;
        if (c >= s->heap_n)
            break;
        if (c + 1 < s->heap_n && s->heap[c + 1]->due < s->heap[c]->due)
            c++;
        if (s->heap[c]->due >= it->due)
            break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, it);
}

/* 0, or -1 out of memory (the item then waits on the ready list: it is
 * tried early, and put back here after another backoff). */
static int heap_push(hf_sched_t *s, item_t *it)
{
    if (s->heap_n == s->heap_size) {
        apr_size_t size = s->heap_size ? 2 * s->heap_size : 256;
        item_t **h = realloc(s->heap, size * sizeof *h);
        if (!h)
            return -1;
        s->heap = h;
        s->heap_size = size;
    }
    heap_set(s, s->heap_n++, it);
    heap_up(s, it->heap_at);
    return 0;
}

static void heap_remove(hf_sched_t *s, item_t *it)
{
    apr_size_t i = it->heap_at;
    item_t *last;

    if (i == NOT_IN_HEAP)
        return;
    it->heap_at = NOT_IN_HEAP;
    last = s->heap[--s->heap_n];
    if (i == s->heap_n)
        return;
    heap_set(s, i, last);
    heap_up(s, i);
    heap_down(s, last->heap_at);
}

/* ---- the ready list ----------------------------------------------------- */

static void ready_push(hf_sched_t *s, item_t *it)
{
    it->rnext = NULL;
    it->rprev = s->ready_tail;
    if (s->ready_tail)
        s->ready_tail->rnext = it;
    else
        s->ready_head = it;
    s->ready_tail = it;
    it->ready = 1;
    s->ready_n++;
}

static void ready_remove(hf_sched_t *s, item_t *it)
{
    if (!it->ready)
        return;
    if (it->rprev)
        it->rprev->rnext = it->rnext;
    else
        s->ready_head = it->rnext;
    if (it->rnext)
        it->rnext->rprev = it->rprev;
    else
        s->ready_tail = it->rprev;
    it->ready = 0;
    s->ready_n--;
}

/* ---- items -------------------------------------------------------------- */

static int is_head(const item_t *it)
{
    return !it->q || it->q->head == it;
}

/* A head that is not running: onto the ready list, or into the heap when
 * it waits for a time (a retry, a backoff, an outcome to record). */
static void arm(hf_sched_t *s, item_t *it)
{
    if (it->state == RUNNING || it->ready || it->heap_at != NOT_IN_HEAP)
        return;
    if ((it->state == UNSTORED || it->due > apr_time_now())
        && heap_push(s, it) == 0)
        return;
    ready_push(s, it);
}

static void disarm(hf_sched_t *s, item_t *it)
{
    ready_remove(s, it);
    heap_remove(s, it);
}

static void free_outcome(hf_sched_outcome_t *o)
{
    free((char *)o->status);
    free((char *)o->output);
    free((char *)o->what);
    memset(o, 0, sizeof *o);
}

/* Keeps a copy of o in it, to record later; -1 out of memory. */
static int keep_outcome(item_t *it, const hf_sched_outcome_t *o)
{
    free_outcome(&it->out);
    it->out = *o;
    it->out.status = o->status ? strdup(o->status) : NULL;
    it->out.what = o->what ? strdup(o->what) : NULL;
    it->out.output = NULL;
    it->out.output_len = 0;
    if (o->output && o->output_len
        && (it->out.output = malloc(o->output_len)))
    {
        memcpy((char *)it->out.output, o->output, o->output_len);
        it->out.output_len = o->output_len;
    }
    return (o->status && !it->out.status) || (o->what && !it->out.what)
               ? -1 : 0;
}

/* Places it among its key's items: after every item that has started, and
 * after those whose order is not greater. */
static void queue_insert(hf_sched_t *s, keyq_t *q, item_t *it)
{
    item_t *after = q->tail;

    while (after && it->order && after->order && !after->started
           && after->state == WAITING && strcmp(after->order, it->order) > 0)
        after = after->prev;
    it->q = q;
    it->prev = after;
    it->next = after ? after->next : q->head;
    if (it->next)
        it->next->prev = it;
    else
        q->tail = it;
    if (after)
        after->next = it;
    else {
        /* the new head: the old one waits behind it */
        if (q->head)
            disarm(s, q->head);
        q->head = it;
    }
}

static keyq_t *key_queue(hf_sched_t *s, const char *key)
{
    keyq_t *q = apr_hash_get(s->keys, key, APR_HASH_KEY_STRING);

    if (q)
        return q;
    if (!(q = calloc(1, sizeof *q)) || !(q->key = strdup(key))) {
        free(q);
        return NULL;
    }
    apr_hash_set(s->keys, q->key, APR_HASH_KEY_STRING, q);
    return q;
}

static item_t *new_item(hf_sched_t *s, const char *key, const char *order,
                        void *data)
{
    item_t *it = calloc(1, sizeof *it);
    keyq_t *q = NULL;

    if (!it || (key && !(q = key_queue(s, key)))) {
        free(it);
        return NULL;
    }
    it->data = data;
    it->order = order;
    it->heap_at = NOT_IN_HEAP;
    it->all_next = s->all;
    if (s->all)
        s->all->all_prev = it;
    s->all = it;
    s->count++;
    if (q)
        queue_insert(s, q, it);
    return it;
}

/* Takes it out of its key's queue: the next becomes the head. */
static void unkey(hf_sched_t *s, item_t *it)
{
    keyq_t *q = it->q;
    int was_head = !it->prev;

    if (!q)
        return;
    if (it->prev)
        it->prev->next = it->next;
    else
        q->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        q->tail = it->prev;
    it->q = NULL;
    it->prev = it->next = NULL;
    if (!q->head) {
        apr_hash_set(s->keys, q->key, APR_HASH_KEY_STRING, NULL);
        free(q->key);
        free(q);
    }
    else if (was_head && !s->closing)
        arm(s, q->head);
}

/* Forgets it; the store frees its data. */
static void finish(hf_sched_t *s, item_t *it)
{
    disarm(s, it);
    unkey(s, it);
    if (it->all_prev)
        it->all_prev->all_next = it->all_next;
    else
        s->all = it->all_next;
    if (it->all_next)
        it->all_next->all_prev = it->all_prev;
    s->count--;
    s->spec->store->release(s->spec->store_ctx, it->data);
    free_outcome(&it->out);
    free(it);
}

int hf_sched_add(hf_sched_t *s, const char *key, const char *order,
                 apr_time_t due, void *data)
{
    item_t *it = new_item(s, key, order, data);

    if (!it)
        return -1;
    it->due = due;
    if (is_head(it))
        arm(s, it);
    return 0;
}

int hf_sched_add_outcome(hf_sched_t *s, const char *key, const char *order,
                         void *data, const hf_sched_outcome_t *o)
{
    /* A finished try holds back nothing; a retry keeps its place. */
    item_t *it = new_item(s, o->verdict == HF_SCHED_RETRY ? key : NULL,
                          order, data);

    if (!it)
        return -1;
    it->state = UNSTORED;
    it->started = 1;
    if (keep_outcome(it, o) != 0) {
        finish(s, it);      /* releases data: the store adds it again */
        return -1;
    }
    if (is_head(it))
        arm(s, it);
    return 0;
}

int hf_sched_count(const hf_sched_t *s)
{
    return s->count;
}

const hf_sched_spec_t *hf_sched_spec(const hf_sched_t *s)
{
    return s->spec;
}

/* The next wait after a storage error: 1 s, doubling, at most a minute. */
static apr_time_t backoff(item_t *it)
{
    it->backoff = it->backoff ? it->backoff * 2 : apr_time_from_sec(1);
    if (it->backoff > apr_time_from_sec(BACKOFF_MAX_SEC))
        it->backoff = apr_time_from_sec(BACKOFF_MAX_SEC);
    return apr_time_now() + it->backoff;
}

/* ---- the worker threads ------------------------------------------------- */

/* The outcome of a try, by the rules: retry while tries are left. */
static void judge(apr_pool_t *p, const hf_sched_spec_t *spec,
                  const hf_sched_job_t *job, const hf_target_result_t *res,
                  hf_sched_outcome_t *o)
{
    const hf_envelope_t *env = &job->env;

    memset(o, 0, sizeof *o);
    o->attempt = env->attempt;
    if (res->ok) {
        o->verdict = HF_SCHED_DONE;
        return;
    }
    o->status = res->status ? res->status : "failed";
    o->output = res->output;
    o->output_len = res->output_len;
    if (res->final) {
        o->verdict = HF_SCHED_FAILED;
        o->attempt = 0;
        o->what = apr_pstrcat(p, job->label, ": ",
                              res->error ? res->error : o->status, NULL);
        return;
    }
    if (env->attempt <= spec->retry) {
        o->verdict = HF_SCHED_RETRY;
        o->due = apr_time_now()
                 + hf_spool_retry_delay(env->attempt, spec->retry_delay);
        return;
    }
    o->verdict = HF_SCHED_FAILED;
    o->what = apr_psprintf(p, "event %s type=%s delivery=%s failed %d "
                           "time%s", env->event_id ? env->event_id : "?",
                           env->type ? env->type : "?",
                           env->delivery_id ? env->delivery_id : "?",
                           env->attempt, env->attempt == 1 ? "" : "s");
}

/* Records o from a worker; what the main thread does next. */
static item_result_t record(hf_sched_t *s, item_t *it, int slot,
                            const hf_sched_outcome_t *o, apr_pool_t *p)
{
    const hf_sched_spec_t *spec = s->spec;
    int rc = spec->store->record(spec->store_ctx, it->data, slot, o, p);

    if (rc == HF_SCHED_LATER) {
        /* Out of memory for the copy: what is kept (the verdict) is
         * recorded later all the same, without the texts. */
        keep_outcome(it, o);
        return R_UNSTORED;
    }
    if (rc == HF_SCHED_OK && o->verdict == HF_SCHED_RETRY) {
        it->retry_due = o->due;
        return R_RETRY;
    }
    return R_RECORDED;
}

/* One try of it, in a worker thread. */
static item_result_t run_item(hf_sched_t *s, item_t *it, int slot,
                              apr_pool_t *p)
{
    const hf_sched_spec_t *spec = s->spec;
    hf_sched_job_t job;
    hf_target_result_t res;
    hf_sched_outcome_t o;
    const char *error = NULL;
    int rc;

    memset(&job, 0, sizeof job);
    memset(&res, 0, sizeof res);
    rc = spec->store->begin(spec->store_ctx, it->data, slot, p, &job, &error);
    if (rc == HF_SCHED_LATER)
        return R_BLOCKED;
    if (rc == HF_SCHED_GONE)
        return R_RECORDED;
    if (rc == HF_SCHED_BAD) {
        res.final = 1;
        res.error = error ? error : "cannot be read";
        res.status = apr_pstrcat(p, "unreadable: ", res.error, NULL);
    }
    else {
        spec->target->run(spec->target_ctx, slot, p, &job, spec->stop,
                          spec->log, &res);
        if (res.cancelled)
            return R_STOPPED;
        if (res.later)
            return R_BLOCKED;
    }
    judge(p, spec, &job, &res, &o);
    return record(s, it, slot, &o, p);
}

static void *APR_THREAD_FUNC worker(apr_thread_t *t, void *arg)
{
    hf_sched_t *s = arg;
    apr_pool_t *p;
    int slot;

    (void)t;
    apr_pool_create(&p, NULL);
    apr_thread_mutex_lock(s->lock);
    slot = ++s->next_slot;
    apr_thread_mutex_unlock(s->lock);
    for (;;) {
        item_t *it;
        apr_thread_mutex_lock(s->lock);
        while (!s->jobs && !*s->spec->stop && !s->quit)
            apr_thread_cond_wait(s->work, s->lock);
        if (s->quit || !(it = s->jobs)) {
            apr_thread_mutex_unlock(s->lock);
            break;
        }
        if (!(s->jobs = it->link))
            s->jobs_tail = NULL;
        apr_thread_mutex_unlock(s->lock);
        it->result = run_item(s, it, slot, p);
        apr_pool_clear(p);
        apr_thread_mutex_lock(s->lock);
        it->link = s->finished;
        s->finished = it;
        apr_thread_mutex_unlock(s->lock);
        if (write(s->wake[1], "", 1) < 0) {
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

/* ---- the main thread ---------------------------------------------------- */

/* Takes back what the workers finished. */
static void collect(hf_sched_t *s)
{
    item_t *it, *next;
    char buf[256];

    while (read(s->wake[0], buf, sizeof buf) > 0)
        ;
    apr_thread_mutex_lock(s->lock);
    it = s->finished;
    s->finished = NULL;
    apr_thread_mutex_unlock(s->lock);
    for (; it; it = next) {
        next = it->link;
        s->running--;
        it->state = WAITING;
        if (it->result != R_BLOCKED)
            it->backoff = 0;
        switch (it->result) {
        case R_RECORDED:
            finish(s, it);
            break;
        case R_RETRY:
            if (!s->spec->store->retries_stay) {
                finish(s, it);
                break;
            }
            it->due = it->retry_due;
            arm(s, it);
            break;
        case R_BLOCKED:
            it->due = backoff(it);
            arm(s, it);
            break;
        case R_UNSTORED:
            /* Done or failed, it holds back nothing any more (as when it
             * is recorded); a retry keeps its place in its key. */
            if (it->out.verdict != HF_SCHED_RETRY)
                unkey(s, it);
            it->state = UNSTORED;
            it->due = backoff(it);
            arm(s, it);
            break;
        case R_STOPPED:
            break;                  /* stays as it is until the end */
        }
    }
}

/* Records again, from the main thread, an outcome that could not be. */
static void record_again(hf_sched_t *s, item_t *it, apr_pool_t *p)
{
    const hf_sched_spec_t *spec = s->spec;
    int rc = spec->store->record(spec->store_ctx, it->data, 0, &it->out, p);

    if (rc == HF_SCHED_LATER) {
        it->due = backoff(it);
        arm(s, it);
    }
    else if (rc == HF_SCHED_OK && it->out.verdict == HF_SCHED_RETRY
             && spec->store->retries_stay) {
        it->state = WAITING;
        it->backoff = 0;
        it->due = it->out.due;
        free_outcome(&it->out);
        arm(s, it);
    }
    else
        finish(s, it);
}

/* Moves the heads whose time has come to the ready list, or records their
 * outcomes. */
static void wake_timed(hf_sched_t *s, apr_pool_t *p)
{
    apr_time_t now = apr_time_now();

    while (s->heap_n && s->heap[0]->due <= now) {
        item_t *it = s->heap[0];
        heap_remove(s, it);
        if (it->state == UNSTORED)
            record_again(s, it, p);
        else
            ready_push(s, it);
    }
}

/* Hands ready items to the workers while some are idle. */
static void start_ready(hf_sched_t *s)
{
    while (s->ready_head && s->running < s->spec->concurrency) {
        item_t *it = s->ready_head;
        if (it->state == UNSTORED) {
            /* Put here when the heap could not grow: into it now, or left
             * for the next pass (out of memory: nothing starts meanwhile,
             * rather than this loop never ending). */
            ready_remove(s, it);
            it->due = backoff(it);
            if (heap_push(s, it) != 0) {
                ready_push(s, it);
                break;
            }
            continue;
        }
        ready_remove(s, it);
        it->state = RUNNING;
        it->started = 1;
        it->link = NULL;
        s->running++;
        apr_thread_mutex_lock(s->lock);
        if (s->jobs_tail)
            s->jobs_tail->link = it;
        else
            s->jobs = it;
        s->jobs_tail = it;
        apr_thread_cond_signal(s->work);
        apr_thread_mutex_unlock(s->lock);
    }
}

static int setup(apr_pool_t *p, hf_sched_t *s)
{
    s->pool = p;
    s->keys = apr_hash_make(p);
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0
        || apr_thread_mutex_create(&s->lock, APR_THREAD_MUTEX_DEFAULT, p)
               != APR_SUCCESS
        || apr_thread_cond_create(&s->work, p) != APR_SUCCESS) {
        hf_log(s->spec->log, HF_LOG_ERR, p,
               HFLOGNO(00414) "%s: cannot create a lock", s->spec->name);
        return -1;
    }
    return 0;
}

/* Ends the first n worker threads: each finishes the try it makes. */
static void stop_workers(hf_sched_t *s, apr_thread_t **threads, int n)
{
    int i;

    apr_thread_mutex_lock(s->lock);
    s->quit = 1;
    apr_thread_cond_broadcast(s->work);
    apr_thread_mutex_unlock(s->lock);
    for (i = 0; i < n; i++) {
        apr_status_t rv;
        apr_thread_join(&rv, threads[i]);
    }
}

/* The end: every item released, the store closed, the pipe too.  An
 * outcome still to record gets one last try first: released unrecorded,
 * its event would run again (the queue hands its claim back).  Once the
 * store refuses one, the others are not tried: each could wait out a
 * timeout. */
static void teardown(hf_sched_t *s, apr_pool_t *p)
{
    const hf_store_t *store = s->spec->store;
    int storable = 1;

    s->closing = 1;
    while (s->all) {
        item_t *it = s->all;
        if (it->state == UNSTORED && storable
            && store->record(s->spec->store_ctx, it->data, 0, &it->out, p)
                   == HF_SCHED_LATER)
            storable = 0;
        it->state = WAITING;
        finish(s, it);
    }
    free(s->heap);
    s->spec->store->close(s->spec->store_ctx, p);
    close(s->wake[0]);
    close(s->wake[1]);
}

static int start_workers(hf_sched_t *s, apr_pool_t *p, apr_thread_t **threads)
{
    const hf_sched_spec_t *spec = s->spec;
    char error[120];
    apr_status_t rv;
    int i;

    for (i = 0; i < spec->concurrency; i++)
        if ((rv = apr_thread_create(&threads[i], NULL, worker, s, p))
            != APR_SUCCESS) {
            /* Fewer workers than asked for would hold events back
             * unseen: stop, and let the parent start another. */
            hf_log(spec->log, HF_LOG_ERR, p,
                   HFLOGNO(00415) "%s: cannot start worker thread %d of "
                   "%d: %s", spec->name, i + 1, spec->concurrency,
                   apr_strerror(rv, error, sizeof error));
            stop_workers(s, threads, i);
            return -1;
        }
    return 0;
}

/* How long to wait for news: until the earlier of the two times, at most
 * WAIT_MAX_MS. */
static int wait_ms(apr_time_t a, apr_time_t b)
{
    apr_time_t when = a && (!b || a < b) ? a : b;
    apr_interval_time_t left;

    if (!when)
        return WAIT_MAX_MS;
    left = when - apr_time_now();
    if (left <= 0)
        return 0;
    return left >= apr_time_from_msec(WAIT_MAX_MS)
               ? WAIT_MAX_MS : (int)((left + 999) / 1000);
}

int hf_sched_run(apr_pool_t *p, const hf_sched_spec_t *spec)
{
    const hf_store_t *store = spec->store;
    hf_sched_t s;
    apr_thread_t **threads;
    apr_pool_t *pass;

    memset(&s, 0, sizeof s);
    s.spec = spec;
    s.wake[0] = s.wake[1] = -1;
    if (setup(p, &s) != 0)
        return -1;
    if (store->open(spec->store_ctx, &s, p) != 0) {
        close(s.wake[0]);
        close(s.wake[1]);
        return -1;
    }
    threads = apr_pcalloc(p, (apr_size_t)spec->concurrency
                                 * sizeof *threads);
    if (start_workers(&s, p, threads) != 0) {
        teardown(&s, p);
        return -1;
    }
    apr_pool_create(&pass, p);
    while (!*spec->stop) {
        struct pollfd fds[3];
        apr_time_t store_wake, timed;
        int n = 0, want;
        collect(&s);
        wake_timed(&s, pass);
        want = spec->concurrency - s.running - s.ready_n;
        store_wake = store->poll(spec->store_ctx, &s, want > 0 ? want : 0,
                                 pass);
        start_ready(&s);
        timed = s.heap_n ? s.heap[0]->due : 0;
        apr_pool_clear(pass);
        fds[n].fd = s.wake[0];
        fds[n++].events = POLLIN;
        if ((fds[n].fd = store->fd(spec->store_ctx)) >= 0)
            fds[n++].events = POLLIN;
        if ((fds[n].fd = spec->wake_fd) >= 0)
            fds[n++].events = POLLIN;
        poll(fds, (nfds_t)n, wait_ms(timed, store_wake));
    }
    stop_workers(&s, threads, spec->concurrency);
    collect(&s);
    teardown(&s, p);
    return 0;
}
