/*
 * hf_commit.c - accepting events into the spool, durably, with group commit.
 *
 * A 202 is a promise, so an event's file and its directory entry must be on
 * disk before the answer.  A sync costs about as much for one file as for a
 * hundred, so the requests of one process that wait at the same moment
 * share it: the first to arrive becomes the leader and syncs everything
 * queued so far (each file's data, then the renames into new/, then one
 * sync of new/ itself); the others wait for its word.  Requests that arrive
 * during a sync form the next group.  A burst thus costs a few syncs per
 * group instead of two per event.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include "hrflow.h"

typedef struct batch_t {
    struct batch_t *next;
    int n;
    const char **tmp, **dst;
    int *fd;
    int done, failed, err;
} batch_t;

struct hf_committer_t {
    const char *dir;
    const char *new_dir;
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *turn;
    batch_t *queue;              /* waiting for the next sync */
    int syncing;                 /* a leader is at work */
    apr_uint64_t syncs, events;
};

hf_committer_t *hf_committer_create(apr_pool_t *p, const char *dir)
{
    hf_committer_t *c = apr_pcalloc(p, sizeof *c);

    c->dir = apr_pstrdup(p, dir);
    c->new_dir = hf_spool_path(p, dir, "new", NULL);
    apr_thread_mutex_create(&c->lock, APR_THREAD_MUTEX_DEFAULT, p);
    apr_thread_cond_create(&c->turn, p);
    return c;
}

void hf_committer_stats(hf_committer_t *c, apr_uint64_t *syncs,
                        apr_uint64_t *events)
{
    apr_thread_mutex_lock(c->lock);
    *syncs = c->syncs;
    *events = c->events;
    apr_thread_mutex_unlock(c->lock);
}

/* Moves a synced batch into new/; on failure puts back what moved. */
static int publish(batch_t *b)
{
    int i, j;

    for (i = 0; i < b->n; i++)
        if (rename(b->tmp[i], b->dst[i]) != 0) {
            b->err = errno;
            for (j = 0; j < i; j++)
                rename(b->dst[j], b->tmp[j]);
            return -1;
        }
    return 0;
}

/* The leader's work, outside the lock: returns the syncs it made. */
static int sync_group(hf_committer_t *c, batch_t *group)
{
    batch_t *b;
    int syncs = 0, i, dir_failed;

    for (b = group; b; b = b->next)
        for (i = 0; i < b->n && !b->failed; i++, syncs++)
            if (fdatasync(b->fd[i]) != 0) {
                b->failed = 1;
                b->err = errno;
            }
    for (b = group; b; b = b->next)
        if (!b->failed && publish(b) != 0)
            b->failed = 1;
    dir_failed = hf_spool_sync_dir(c->new_dir) != 0;
    syncs++;
    for (b = group; b; b = b->next)
        if (dir_failed && !b->failed) {
            /* Moved but maybe not durable: refuse; the sender retries,
             * and a duplicate is better than a loss. */
            b->failed = 1;
            b->err = errno;
        }
    return syncs;
}

/* Waits until b is durable in new/ (0) or cannot be (-1, errno). */
static int commit(hf_committer_t *c, batch_t *b)
{
    apr_thread_mutex_lock(c->lock);
    b->next = c->queue;
    c->queue = b;
    while (!b->done) {
        if (!c->syncing) {
            batch_t *group = c->queue, *g;
            int syncs;
            c->queue = NULL;
            c->syncing = 1;
            apr_thread_mutex_unlock(c->lock);
            syncs = sync_group(c, group);
            apr_thread_mutex_lock(c->lock);
            c->syncs += (apr_uint64_t)syncs;
            for (g = group; g; g = g->next) {
                g->done = 1;
                if (!g->failed)
                    c->events += (apr_uint64_t)g->n;
            }
            c->syncing = 0;
            apr_thread_cond_broadcast(c->turn);
        }
        else {
            apr_thread_cond_wait(c->turn, c->lock);
        }
    }
    apr_thread_mutex_unlock(c->lock);
    errno = b->err;
    return b->failed ? -1 : 0;
}

/* The spool file of one event, as its endpoint routes it now. */
static char *envelope_of(apr_pool_t *p, const hf_config_t *cfg,
                         const hf_outcome_t *out, const hf_event_t *ev,
                         const hf_handler_t *h, apr_time_t now,
                         const char **name, apr_size_t *len)
{
    hf_envelope_t e;

    memset(&e, 0, sizeof e);
    e.delivery_id = ev->delivery_id;
    e.event_id = ev->id;
    e.type = ev->type;
    e.order_key = hf_spool_order_key(p, ev);
    e.received = now;
    e.index = ev->index;
    e.count = out->events->nelts;
    e.verified = out->verified;
    e.timeout = hf_config_timeout(cfg);
    e.argv = h->argv;
    e.text = ev->text;
    e.len = ev->len;
    *name = apr_psprintf(p, "%" APR_TIME_T_FMT "-%04d-%s.json", now,
                         ev->index, ev->delivery_id);
    return hf_envelope_encode(p, &e, len);
}

static void refuse(hf_outcome_t *out, batch_t *b)
{
    int i;

    for (i = 0; i < b->n; i++) {
        close(b->fd[i]);
        unlink(b->tmp[i]);
    }
    out->rc = HF_E_SPOOL;
    out->error = "spool_unavailable";
    out->queued = 0;
}

void hf_spool_accept(apr_pool_t *p, const hf_config_t *cfg,
                     hf_committer_t *committer, hf_outcome_t *out,
                     const hf_logger_t *log)
{
    int n = out->events->nelts, i;
    batch_t b = {NULL, 0, NULL, NULL, NULL, 0, 0, 0};
    apr_time_t now = apr_time_now();

    b.tmp = apr_pcalloc(p, n * sizeof *b.tmp);
    b.dst = apr_pcalloc(p, n * sizeof *b.dst);
    b.fd = apr_pcalloc(p, n * sizeof *b.fd);
    for (i = 0; i < n; i++) {
        const hf_event_t *ev = APR_ARRAY_IDX(out->events, i, hf_event_t *);
        const hf_handler_t *h = hf_route(cfg->handlers, ev->type);
        const char *name;
        apr_size_t len;
        char *text;
        if (!h) {
            out->ignored++;
            hf_log(log, HF_LOG_INFO, p,
                   "event %s type=%s delivery=%s handler=none result=ignored",
                   ev->id, ev->type, ev->delivery_id);
            continue;
        }
        text = envelope_of(p, cfg, out, ev, h, now, &name, &len);
        b.tmp[b.n] = hf_spool_path(p, cfg->spool, "tmp", name);
        b.dst[b.n] = hf_spool_path(p, cfg->spool, "new", name);
        if ((b.fd[b.n] = hf_spool_write(b.tmp[b.n], text, len, 1)) < 0) {
            hf_log(log, HF_LOG_ERR, p, "spool: cannot write %s: %s",
                   b.tmp[b.n], strerror(errno));
            return refuse(out, &b);
        }
        b.n++;
    }
    if (b.n == 0)
        return;
    if (commit(committer, &b) != 0) {
        hf_log(log, HF_LOG_ERR, p, "spool: cannot make %d event%s durable "
               "in %s: %s", b.n, b.n == 1 ? "" : "s", cfg->spool,
               strerror(b.err));
        return refuse(out, &b);
    }
    for (i = 0; i < b.n; i++)
        close(b.fd[i]);
    out->queued = b.n;
    for (i = 0; i < n; i++) {
        const hf_event_t *ev = APR_ARRAY_IDX(out->events, i, hf_event_t *);
        if (hf_route(cfg->handlers, ev->type))
            hf_log(log, HF_LOG_INFO, p,
                   "event %s type=%s delivery=%s result=queued", ev->id,
                   ev->type, ev->delivery_id);
    }
}
