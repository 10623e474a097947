/*
 * hf_commit.c - accepting events into the spool, durably, with group commit.
 *
 * A 202 is a promise, so an event's data and its directory entry must be on
 * disk before the answer, and only ours: syncfs(2) would also write out
 * whatever else the file system holds unwritten (hundreds of MB beside a
 * busy program), and under prefork once per request.  So each request
 * writes its own files out (in its own thread, side by side with the
 * others), and only then are they named in new/.  A name is durable once
 * new/ itself is synced, and that sync costs as much for one name as for
 * a hundred, so the requests of one process that wait at the same moment
 * share it: the first to arrive becomes the leader, names everything
 * queued so far and syncs new/ once; the others wait for its word.
 * Requests that arrive meanwhile form the next group.  Last, each request
 * fdatasyncs its files (by then a formality on ext4 and XFS, see
 * write_out) and answers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
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

/* How event files are written: unnamed in new/ and linked there through
 * /proc/self/fd, or (no O_TMPFILE on the file system, or no /proc, as
 * under ChrootDir) named in tmp/ and renamed into new/.  Learnt from the
 * first file; requests read it without the lock. */
enum { WRITE_UNTRIED, WRITE_UNNAMED, WRITE_NAMED };

struct hf_committer_t {
    const char *dir;
    const char *new_dir;
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *turn;
    batch_t *queue;              /* waiting for the next sync */
    int syncing;                 /* a leader is at work */
    apr_uint64_t groups, events;
    atomic_int how;              /* WRITE_* */
};

hf_committer_t *hf_committer_create(apr_pool_t *p, const char *dir)
{
    hf_committer_t *c = apr_pcalloc(p, sizeof *c);

    c->dir = apr_pstrdup(p, dir);
    c->new_dir = hf_spool_path(p, dir, "new", NULL);
    atomic_init(&c->how, WRITE_UNTRIED);
    if (apr_thread_mutex_create(&c->lock, APR_THREAD_MUTEX_DEFAULT, p)
            != APR_SUCCESS
        || apr_thread_cond_create(&c->turn, p) != APR_SUCCESS)
        return NULL;
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

static void proc_path(char *buf, apr_size_t size, int fd)
{
    snprintf(buf, size, "/proc/self/fd/%d", fd);
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
            proc_path(proc, sizeof proc, b->fd[i]);
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

    if (fd >= 0 && hf_spool_write_all(fd, data, len) != 0) {
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

/* Can an unnamed file be named here?  linkat(2) names it through
 * /proc/self/fd/N (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH), so /proc
 * must be there and show this very file. */
static int nameable(int fd)
{
    struct stat mine, seen;
    char proc[64];

    proc_path(proc, sizeof proc, fd);
    return fstat(fd, &mine) == 0 && stat(proc, &seen) == 0
           && mine.st_dev == seen.st_dev && mine.st_ino == seen.st_ino;
}

/* Writes one event file for the batch, unsynced; its fd, or -1 with errno.
 * The first file decides how this process writes them (see WRITE_*). */
static int write_event(apr_pool_t *p, hf_committer_t *c, batch_t *b,
                       const char *name, const char *text, apr_size_t len,
                       const hf_logger_t *log)
{
    int how = atomic_load(&c->how), fd = -1;

    b->dst[b->n] = hf_spool_path(p, c->dir, "new", name);
    if (how != WRITE_NAMED) {
        fd = write_unnamed(c->new_dir, text, len);
        if (fd >= 0 && how == WRITE_UNNAMED)
            return fd;
        if (fd >= 0 && nameable(fd)) {
            atomic_store(&c->how, WRITE_UNNAMED);
            return fd;
        }
        if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR)
            return -1;
        if (fd >= 0)
            close(fd);
        if (atomic_exchange(&c->how, WRITE_NAMED) != WRITE_NAMED)
            hf_log(log, HF_LOG_DEBUG, p,
                   HFLOGNO(00507) "spool %s: %s: event files are "
                   "written in tmp/, then renamed", c->dir,
                   fd >= 0 ? "no /proc/self/fd to name unnamed files"
                           : "no O_TMPFILE on this file system");
    }
    b->tmp[b->n] = hf_spool_path(p, c->dir, "tmp", name);
    return hf_spool_write(b->tmp[b->n], text, len, 1);
}

/* Writes a request's files out to the disk and waits, before any is
 * named.  sync_file_range starts no journal commit: the blocks it
 * allocates join the running transaction, which is never later than the
 * one that will hold the names, so the group's sync of new/ makes data
 * and names durable in one commit, and no crash keeps a name without its
 * data (journals commit in order).  Without it: fdatasync, a commit. */
static int write_out(const batch_t *b)
{
    int i;

    for (i = 0; i < b->n; i++)
#ifdef SYNC_FILE_RANGE_WRITE
        if (sync_file_range(b->fd[i], 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE
                                                | SYNC_FILE_RANGE_WRITE
                                                | SYNC_FILE_RANGE_WAIT_AFTER)
            != 0)
#else
        if (fdatasync(b->fd[i]) != 0)
#endif
            return -1;
    return 0;
}

/* What POSIX asks for besides the sync of new/: each file's fdatasync.
 * After that sync it finds its data committed already (ext4, XFS) and
 * costs no further commit. */
static int sync_files(const batch_t *b)
{
    int i;

    for (i = 0; i < b->n; i++)
        if (fdatasync(b->fd[i]) != 0)
            return -1;
    return 0;
}

/* The leader's work, outside the lock: every file of the group, its data
 * written out, is named in new/, then one fsync of new/ makes the names
 * durable.  tmp/ is not synced: a rename that a crash undoes there
 * leaves a file in tmp/, which nothing reads and the dispatcher clears.
 *
 * An event may be seen in new/ (and even run) a moment before its name is
 * durable.  If the sync then fails, its request is refused and the sender
 * sends it again: the event may run twice, it is never lost. */
static void sync_group(hf_committer_t *c, batch_t *group)
{
    batch_t *b;
    int named = 0, fd, err = 0;

    for (b = group; b; b = b->next) {
        if (publish(b) != 0)
            b->failed = 1;
        else
            named = 1;
    }
    if (!named)
        return;
    fd = open(c->new_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    for (b = group; b; b = b->next)
        if (err && !b->failed) {
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

void hf_commit_envelope(apr_pool_t *p, const hf_config_t *cfg,
                        const hf_outcome_t *out, const hf_event_t *ev,
                        const hf_handler_t *h, apr_time_t now,
                        hf_envelope_t *e)
{
    memset(e, 0, sizeof *e);
    e->delivery_id = ev->delivery_id;
    e->event_id = ev->id;
    e->type = ev->type;
    e->order_key = hf_spool_order_key(p, ev);
    e->received = now;
    e->index = ev->index;
    e->count = out->events->nelts;
    e->verified = out->verified;
    e->timeout = hf_config_timeout(cfg);
    e->argv = h->argv;
    e->text = ev->text;
    e->len = ev->len;
    e->name = hf_spool_event_name(p, now, ev->index, ev->delivery_id,
                                  e->order_key);
}

/* The spool file of one event, as its endpoint routes it now. */
static char *envelope_of(apr_pool_t *p, const hf_config_t *cfg,
                         const hf_outcome_t *out, const hf_event_t *ev,
                         const hf_handler_t *h, apr_time_t now,
                         const char **name, apr_size_t *len)
{
    hf_envelope_t e;

    hf_commit_envelope(p, cfg, out, ev, h, now, &e);
    *name = e.name;
    return hf_spool_envelope_encode(p, &e, len);
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

void hf_commit_accept(apr_pool_t *p, const hf_config_t *cfg,
                      hf_committer_t *committer, hf_outcome_t *out,
                      const hf_logger_t *log)
{
    int n = out->events->nelts, i, rc;
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
        if ((b.fd[b.n] = write_event(p, committer, &b, name, text, len,
                                     log)) < 0) {
            hf_log(log, HF_LOG_ERR, p,
                   HFLOGNO(00502) "spool: cannot write %s: %s",
                   b.dst[b.n], strerror(errno));
            return refuse(out, &b, HF_E_SPOOL, "spool_unavailable");
        }
        b.event[b.n++] = ev;
    }
    if (b.n == 0)
        return;
    if (write_out(&b) != 0) {
        hf_log(log, HF_LOG_ERR, p,
               HFLOGNO(00506) "spool: cannot write %d event%s to %s: %s",
               b.n, b.n == 1 ? "" : "s", cfg->spool, strerror(errno));
        return refuse(out, &b, HF_E_SPOOL, "spool_unavailable");
    }
    rc = commit(committer, &b);
    if (rc == 0 && sync_files(&b) != 0) {
        rc = -1;                 /* named, maybe run: sent again, run twice */
        b.err = errno;
    }
    if (rc != 0) {
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
