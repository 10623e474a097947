/*
 * hf_commit.c - accepting events into the spool, durably, with group commit.
 *
 * A 202 is a promise, so an event's file and its directory entry must be on
 * disk before the answer.  A sync costs about as much for one file as for a
 * hundred, so the requests of one process that wait at the same moment
 * share it: the first to arrive becomes the leader and commits everything
 * queued so far with one sync; the others wait for its word.  Requests that
 * arrive during a sync form the next group.  A burst thus costs one sync
 * per group instead of two per event.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
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
    const char **tmp;            /* NULL: an unnamed file (O_TMPFILE) */
    const char **dst;
    int *fd;
    const hf_event_t **event;    /* what each file holds */
    int done, failed, err;
} batch_t;

struct hf_committer_t {
    const char *dir;
    const char *new_dir;
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *turn;
    batch_t *queue;              /* waiting for the next sync */
    int syncing;                 /* a leader is at work */
    apr_uint64_t groups, events;
    int unnamed;                 /* O_TMPFILE works here */
};

hf_committer_t *hf_committer_create(apr_pool_t *p, const char *dir)
{
    hf_committer_t *c = apr_pcalloc(p, sizeof *c);

    c->dir = apr_pstrdup(p, dir);
    c->new_dir = hf_spool_path(p, dir, "new", NULL);
    c->unnamed = 1;
    apr_thread_mutex_create(&c->lock, APR_THREAD_MUTEX_DEFAULT, p);
    apr_thread_cond_create(&c->turn, p);
    return c;
}

void hf_committer_stats(hf_committer_t *c, apr_uint64_t *groups,
                        apr_uint64_t *events)
{
    apr_thread_mutex_lock(c->lock);
    *groups = c->groups;
    *events = c->events;
    apr_thread_mutex_unlock(c->lock);
}

/* Moves a batch into new/; on failure puts back what moved. */
static int publish(batch_t *b)
{
    char proc[64];
    int i, j, rc;

    for (i = 0; i < b->n; i++) {
        if (b->tmp[i])
            rc = rename(b->tmp[i], b->dst[i]);
        else {
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", b->fd[i]);
            rc = linkat(AT_FDCWD, proc, AT_FDCWD, b->dst[i],
                        AT_SYMLINK_FOLLOW);
        }
        if (rc != 0) {
            b->err = errno;
            for (j = 0; j < i; j++)
                if (b->tmp[j])
                    rename(b->dst[j], b->tmp[j]);
                else
                    unlink(b->dst[j]);
            return -1;
        }
    }
    return 0;
}

/* An event file with no name yet, in new/ itself: named only when its group
 * commits.  Many threads creating names in one folder contend for its lock;
 * unnamed files do not.  -1 with errno EOPNOTSUPP where the file system
 * cannot, and the caller writes to tmp/ instead. */
static int write_unnamed(const char *dir, const char *data, apr_size_t len)
{
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640);

    if (fd >= 0 && hf_write_all(fd, data, len) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
#else
    errno = EOPNOTSUPP;
    return -1;
#endif
}

/* Writes one event file for the batch; its fd, or -1 with errno. */
static int write_event(apr_pool_t *p, hf_committer_t *c, batch_t *b,
                       const char *name, const char *text, apr_size_t len)
{
    int fd = c->unnamed ? write_unnamed(c->new_dir, text, len) : -1;

    b->dst[b->n] = hf_spool_path(p, c->dir, "new", name);
    if (fd >= 0 || !c->unnamed || (errno != EOPNOTSUPP && errno != EISDIR))
        return fd;
    c->unnamed = 0;              /* not on this file system: tmp/ then */
    b->tmp[b->n] = hf_spool_path(p, c->dir, "tmp", name);
    return hf_spool_write(b->tmp[b->n], text, len, 1);
}

/* The leader's work, outside the lock: every file of the group moves into
 * new/, then one syncfs(2) makes their data, their inodes and the new
 * directory entries durable together, in one journal commit.  Syncing file
 * by file costs a commit each, and a rename a further one.
 *
 * An event may be seen in new/ (and even run) a moment before it is
 * durable.  If the sync then fails, its request is refused and the sender
 * sends it again: the event may run twice, it is never lost. */
static void sync_group(hf_committer_t *c, batch_t *group)
{
    batch_t *b;
    int failed, err;

    for (b = group; b; b = b->next)
        if (publish(b) != 0)
            b->failed = 1;
    failed = syncfs(group->fd[0]) != 0;
    err = errno;
    for (b = group; b; b = b->next)
        if (failed && !b->failed) {
            b->failed = 1;
            b->err = err;
        }
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
            c->queue = NULL;
            c->syncing = 1;
            apr_thread_mutex_unlock(c->lock);
            sync_group(c, group);
            apr_thread_mutex_lock(c->lock);
            c->groups++;
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
    *name = hf_spool_event_name(p, now, ev->index, ev->delivery_id,
                                e.order_key);
    return hf_envelope_encode(p, &e, len);
}

static void refuse(hf_outcome_t *out, batch_t *b, hf_rc_t rc,
                   const char *error)
{
    int i;

    for (i = 0; i < b->n; i++) {
        close(b->fd[i]);
        if (b->tmp[i])
            unlink(b->tmp[i]);
    }
    out->rc = rc;
    out->error = error;
    out->queued = 0;
}

void hf_spool_accept(apr_pool_t *p, const hf_config_t *cfg,
                     hf_committer_t *committer, hf_outcome_t *out,
                     const hf_logger_t *log)
{
    int n = out->events->nelts, i;
    batch_t b = {NULL, 0, NULL, NULL, NULL, NULL, 0, 0, 0};
    apr_time_t now = apr_time_now();

    b.tmp = apr_pcalloc(p, n * sizeof *b.tmp);
    b.dst = apr_pcalloc(p, n * sizeof *b.dst);
    b.fd = apr_pcalloc(p, n * sizeof *b.fd);
    b.event = apr_pcalloc(p, n * sizeof *b.event);
    for (i = 0; i < n; i++) {
        const hf_event_t *ev = APR_ARRAY_IDX(out->events, i, hf_event_t *);
        const hf_handler_t *h = hf_route_event(p, cfg, ev, out, log);
        const char *name;
        apr_size_t len;
        char *text;
        if (!h)
            continue;
        text = envelope_of(p, cfg, out, ev, h, now, &name, &len);
        /* HrflowMaxBody is bounded at startup so that every event fits; an
         * envelope past that bound (an order key of escapes, a huge
         * handler line) would be a 202 the dispatcher cannot read. */
        if (len > HF_SPOOL_FILE_MAX) {
            hf_log(log, HF_LOG_ERR, p,
                   HFLOGNO(00501) "spool: event %s is %" APR_SIZE_T_FMT
                   " bytes in its spool file, more than %d: refused",
                   ev->id, len, HF_SPOOL_FILE_MAX);
            return refuse(out, &b, HF_E_TOO_LARGE, "body_too_large");
        }
        if ((b.fd[b.n] = write_event(p, committer, &b, name, text, len)) < 0) {
            hf_log(log, HF_LOG_ERR, p,
                   HFLOGNO(00502) "spool: cannot write %s: %s",
                   b.dst[b.n], strerror(errno));
            return refuse(out, &b, HF_E_SPOOL, "spool_unavailable");
        }
        b.event[b.n++] = ev;
    }
    if (b.n == 0)
        return;
    if (commit(committer, &b) != 0) {
        hf_log(log, HF_LOG_ERR, p,
               HFLOGNO(00503) "spool: cannot make %d event%s durable "
               "in %s: %s", b.n, b.n == 1 ? "" : "s", cfg->spool,
               strerror(b.err));
        return refuse(out, &b, HF_E_SPOOL, "spool_unavailable");
    }
    out->queued = b.n;
    for (i = 0; i < b.n; i++) {
        close(b.fd[i]);
        hf_log(log, HF_LOG_DEBUG, p,
               HFLOGNO(00505) "event %s committed as %s (a group of %d)",
               b.event[i]->id, b.dst[i], b.n);
        hf_log(log, HF_LOG_INFO, p,
               HFLOGNO(00504) "event %s type=%s delivery=%s "
               "result=queued", b.event[i]->id, b.event[i]->type,
               b.event[i]->delivery_id);
    }
}
