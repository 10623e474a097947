/*
 * hf_spool.c - the durable spool's layout (SPEC section 6).
 *
 * DIR/tmp     being written; never read
 * DIR/new     accepted (the request answered 202), not yet run
 * DIR/run     its handler is running (after a crash: was running)
 * DIR/retry   its handler failed; runs again at next_attempt
 * DIR/failed  every try failed: NAME.json, NAME.status, NAME.output
 * DIR/done    its handler succeeded: kept ten minutes, then deleted
 *
 * An event is one file, NAME.json, moved between folders by rename(2), so it
 * is in exactly one state at any moment.  NAME begins with the time of
 * arrival in microseconds, so `ls` lists arrival order.  The file is a JSON
 * object: the delivery's bookkeeping, then "event", the event exactly as
 * received (kept byte for byte: its SHA-256 is HRFLOW_EVENT_ID).
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <apr_strings.h>
#include "hrflow.h"

const char *const hf_spool_states[] = {"tmp", "new", "run", "retry", "failed",
                                       "done", NULL};

#define EVENT_NAME "event"
#define EVENT_MEMBER "\"" EVENT_NAME "\":"

const char *hf_spool_path(apr_pool_t *p, const char *dir, const char *state,
                          const char *name)
{
    return apr_pstrcat(p, dir, "/", state, name ? "/" : "", name, NULL);
}

/* ---- the folders, as root sees them ------------------------------------
 *
 * Apache's parent runs as root and prepares the spool at every start and
 * graceful restart, while everything below DIR belongs to the server's
 * user, who may have put a symbolic link where a folder was.  So nothing
 * here follows a link: each folder is opened relative to its parent's
 * descriptor with O_NOFOLLOW, examined and given away through that
 * descriptor, and whatever is not a real folder (or, inside a state
 * folder, a real file) is refused with its path.  The folders above DIR
 * must be root's alone: a user who can change one (the server's user or
 * any other) could put a link in DIR's place between two starts. */

typedef struct {
    apr_pool_t *p;
    int uid, gid;                /* the server's user; -1: not root */
    int fix;                     /* create and give away (else only look) */
} prepare_t;

/* Could a user other than root rename or replace entries of this folder?
 * A sticky folder of root's protects the entries root owns. */
static int replaceable(const prepare_t *c, const struct stat *folder,
                       const struct stat *entry)
{
    int writable = folder->st_uid != 0 || (folder->st_mode & S_IWOTH)
                   || ((folder->st_mode & S_IWGRP) && folder->st_gid != 0);

    if (!writable || c->uid < 0)
        return 0;
    return folder->st_uid != 0 || !(folder->st_mode & S_ISVTX) || !entry
           || entry->st_uid != 0;
}

/* The descriptor of the folder that holds DIR, reached from / one name at
 * a time without following a link (the administrator's links in the path
 * are resolved first); -1 and *err. */
static int open_parent(const prepare_t *c, const char *parent,
                       const char **err)
{
    char *real = realpath(parent, NULL), *name, *state;
    const char *walked = "";
    struct stat st, next;
    int fd;

    *err = NULL;
    if (!real) {
        *err = apr_psprintf(c->p, "cannot create %s: %s", parent,
                            strerror(errno));
        return -1;
    }
    name = apr_pstrdup(c->p, real);
    free(real);
    fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        *err = apr_psprintf(c->p, "cannot open /: %s", strerror(errno));
        return -1;
    }
    for (name = apr_strtok(name, "/", &state); name;
         name = apr_strtok(NULL, "/", &state)) {
        int sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                                       | O_CLOEXEC);
        const char *above = *walked ? walked : "/";
        walked = apr_pstrcat(c->p, walked, "/", name, NULL);
        if (sub < 0 || fstat(sub, &next) != 0) {
            *err = apr_psprintf(c->p, "cannot open %s: %s", walked,
                                strerror(errno));
            if (sub >= 0)
                close(sub);
            break;
        }
        if (replaceable(c, &st, &next)) {
            *err = apr_psprintf(c->p, "%s is writable by a user other than "
                                "root: it could put a link in place of %s",
                                above, walked);
            close(sub);
            break;
        }
        close(fd);
        fd = sub;
        st = next;
    }
    if (!name && replaceable(c, &st, NULL))
        *err = apr_psprintf(c->p, "%s is writable by a user other than root: "
                            "it could put a link in place of the spool",
                            *walked ? walked : "/");
    if (name || *err) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Folder name under the folder at fd (path, for messages): created when
 * missing, a real folder, owned by the server's user.  Its fd, or -1. */
static int prepare_folder(const prepare_t *c, int at, const char *name,
                          const char *path, const char **err)
{
    struct stat st;
    int fd;

    if (c->fix && mkdirat(at, name, 0750) != 0 && errno != EEXIST) {
        *err = apr_psprintf(c->p, "cannot create %s: %s", path,
                            strerror(errno));
        return -1;
    }
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT && !c->fix)
            return -1;           /* made at start */
        *err = apr_psprintf(c->p, "cannot open %s: %s", path,
                            strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        *err = apr_psprintf(c->p, "%s is %s, not a directory: refused (remove "
                            "it)", path, S_ISLNK(st.st_mode)
                                ? "a symbolic link" : "a file");
        return -1;
    }
    fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        *err = apr_psprintf(c->p, "cannot open %s: %s", path,
                            strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (c->fix && c->uid >= 0
        && (st.st_uid != (uid_t)c->uid || st.st_gid != (gid_t)c->gid)
        && fchown(fd, (uid_t)c->uid, (gid_t)c->gid) != 0) {
        *err = apr_psprintf(c->p, "cannot give %s to the server's user: %s",
                            path, strerror(errno));
        close(fd);
        return -1;
    }
    /* The dispatcher runs the handler a spool file names: whoever can add a
     * file here runs commands as the server's user.  Only that user may
     * write; its group (the server's group once given, see above) may
     * read.  mkdirat's mode applies only on creation, so check it. */
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        *err = apr_psprintf(c->p, "%s is writable by its group or others "
                            "(mode %04o): refused (chmod 0750 it)", path,
                            (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    return fd;
}

/* Everything in a state folder must be a regular file. */
static const char *check_files(const prepare_t *c, int fd, const char *path)
{
    int dup_fd = dup(fd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    const char *err = NULL;
    struct dirent *de;
    struct stat st;

    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return apr_psprintf(c->p, "cannot read %s: %s", path,
                            strerror(errno));
    }
    while (!err && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (de->d_type == DT_REG)
            continue;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
            && S_ISREG(st.st_mode))
            continue;
        err = apr_psprintf(c->p, "%s/%s is not a regular file: refused "
                           "(remove it)", path, de->d_name);
    }
    closedir(d);
    return err;
}

/* DIR's own files, when present, must be regular files. */
static const char *check_own_files(const prepare_t *c, int fd,
                                   const char *dir)
{
    static const char *const names[] = {"dispatcher.pid", "dispatcher.lock",
                                        NULL};
    struct stat st;
    int i;

    for (i = 0; names[i]; i++)
        if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0
            && !S_ISREG(st.st_mode))
            return apr_psprintf(c->p, "%s/%s is not a regular file: refused "
                                "(remove it)", dir, names[i]);
    return NULL;
}

static const char *prepare(const prepare_t *c, const char *dir)
{
    char *parent = apr_pstrdup(c->p, dir), *base;
    const char *err = NULL;
    int at, top, i;

    while (strlen(parent) > 1 && parent[strlen(parent) - 1] == '/')
        parent[strlen(parent) - 1] = '\0';
    base = strrchr(parent, '/');
    if (!base || !base[1] || !strcmp(base + 1, ".") || !strcmp(base + 1, ".."))
        return apr_psprintf(c->p, "%s: give the spool as an absolute path "
                            "naming a folder", dir);
    *base++ = '\0';
    if ((at = open_parent(c, *parent ? parent : "/", &err)) < 0)
        return err;
    top = prepare_folder(c, at, base, dir, &err);
    close(at);
    if (top < 0)
        return err;
    err = check_own_files(c, top, dir);
    for (i = 0; !err && hf_spool_states[i]; i++) {
        const char *path = hf_spool_path(c->p, dir, hf_spool_states[i], NULL);
        int fd = prepare_folder(c, top, hf_spool_states[i], path, &err);
        if (fd >= 0) {
            err = check_files(c, fd, path);
            close(fd);
        }
    }
    close(top);
    return err;
}

const char *hf_spool_prepare(apr_pool_t *p, const char *dir, int uid, int gid)
{
    prepare_t c = {p, uid, gid, 1};

    return prepare(&c, dir);
}

const char *hf_spool_inspect(apr_pool_t *p, const char *dir, int uid)
{
    prepare_t c = {p, uid, -1, 0};

    return prepare(&c, dir);
}

const char *hf_spool_order_key(apr_pool_t *p, const hf_event_t *ev)
{
    static const char *const objects[] = {"profile", "job", NULL};
    int i;

    for (i = 0; objects[i]; i++) {
        hf_json_t *o = hf_json_get(ev->json, objects[i]);
        const char *key = o && hf_json_is_object(o)
                              ? hf_json_get_string(o, "key") : NULL;
        unsigned char digest[32];
        char hex[65];
        if (!key || !*key)
            continue;
        if (strlen(key) <= HF_ORDER_KEY_MAX)
            return apr_pstrcat(p, objects[i], ":", key, NULL);
        /* The sender chooses the key's length: a long one is kept as its
         * digest, one to one in practice, so that it fits where keys are
         * kept (an index entry of the queue holds about 2.7 kB). */
        hf_sha256(key, strlen(key), digest);
        hf_codec_hex_encode(digest, sizeof digest, hex);
        return apr_pstrcat(p, objects[i], ":sha256:", hex, NULL);
    }
    return NULL;
}

const char *hf_spool_event_name(apr_pool_t *p, apr_time_t received,
                                int index, const char *delivery_id,
                                const char *order_key)
{
    unsigned char digest[32];
    char tag[9];

    if (!order_key)
        return apr_psprintf(p, "%" APR_TIME_T_FMT "-%04d-%s.json", received,
                            index, delivery_id);
    hf_sha256(order_key, strlen(order_key), digest);
    hf_codec_hex_encode(digest, 4, tag);
    return apr_psprintf(p, "%" APR_TIME_T_FMT "-%04d-%s-%s.json", received,
                        index, delivery_id, tag);
}

const char *hf_spool_name_key(apr_pool_t *p, const char *name)
{
    /* TIME-INDEX-DELIVERY[-KEYTAG].json */
    const char *s = name;
    int dashes = 0;

    for (; *s && dashes < 3; s++)
        if (*s == '-')
            dashes++;
    if (dashes < 3 || strlen(s) < 5)
        return NULL;
    return apr_pstrmemdup(p, s, strlen(s) - 5);
}

apr_interval_time_t hf_spool_retry_delay(int attempt, int first_delay)
{
    apr_interval_time_t d = apr_time_from_sec(first_delay);

    while (--attempt > 0 && d < apr_time_from_sec(3600))
        d *= 2;
    return d > apr_time_from_sec(3600) ? apr_time_from_sec(3600) : d;
}

char *hf_spool_envelope_encode(apr_pool_t *p, const hf_envelope_t *e,
                               apr_size_t *len)
{
    const char *argv = "";
    char *text;
    int i;

    for (i = 0; e->argv[i]; i++)
        argv = apr_pstrcat(p, argv, i ? "," : "", hf_json_quote(p, e->argv[i]),
                           NULL);
    text = apr_psprintf(
        p,
        "{\"delivery_id\":%s,\"event_id\":%s,\"type\":%s,"
        "\"order_key\":%s,\"received\":%" APR_TIME_T_FMT ",\"attempt\":%d,"
        "\"next_attempt\":%" APR_TIME_T_FMT ",\"last_result\":%s,"
        "\"index\":%d,\"count\":%d,\"signature\":\"%s\",\"timeout\":%d,"
        "\"handler\":[%s],\n" EVENT_MEMBER "%.*s}\n",
        hf_json_quote(p, e->delivery_id),
        e->event_id ? hf_json_quote(p, e->event_id) : "null",
        hf_json_quote(p, e->type),
        e->order_key ? hf_json_quote(p, e->order_key) : "null", e->received,
        e->attempt, e->next_attempt,
        e->last_result ? hf_json_quote(p, e->last_result) : "null", e->index,
        e->count, e->verified ? "verified" : "unsigned", e->timeout, argv,
        (int)e->len, e->text);
    *len = strlen(text);
    return text;
}

static const char *copy_string(apr_pool_t *p, const hf_json_t *o,
                               const char *key)
{
    const char *s = hf_json_get_string(o, key);
    return s ? apr_pstrdup(p, s) : NULL;
}

/* Fills e from the parsed bookkeeping; NULL or what is wrong. */
static const char *envelope_fields(apr_pool_t *p, const hf_json_t *o,
                                   hf_envelope_t *e)
{
    hf_json_t *h = hf_json_get(o, "handler");
    apr_size_t i, n = h && hf_json_is_array(h) ? hf_json_array_length(h) : 0;
    const char **argv = apr_pcalloc(p, (n + 1) * sizeof *argv);
    const char *sig = hf_json_get_string(o, "signature");

    for (i = 0; i < n; i++)
        if (!(argv[i] = hf_json_as_string(hf_json_array_get(h, i))))
            return "handler is not a list of strings";
    if (n == 0)
        return "no handler";
    e->argv = argv;
    e->delivery_id = copy_string(p, o, "delivery_id");
    e->event_id = copy_string(p, o, "event_id");
    e->type = copy_string(p, o, "type");
    e->order_key = copy_string(p, o, "order_key");
    e->last_result = copy_string(p, o, "last_result");
    e->received = hf_json_get_int(o, "received", 0);
    e->attempt = (int)hf_json_get_int(o, "attempt", 0);
    e->next_attempt = hf_json_get_int(o, "next_attempt", 0);
    e->index = (int)hf_json_get_int(o, "index", 0);
    e->count = (int)hf_json_get_int(o, "count", 1);
    e->timeout = (int)hf_json_get_int(o, "timeout", HF_DEFAULT_TIMEOUT);
    e->verified = sig && !strcmp(sig, "verified");
    if (!e->delivery_id || !e->type || e->count < 1 || e->timeout < 1)
        return "bookkeeping fields missing";
    return NULL;
}

/* The event member, last in the file, just before its closing brace.  The
 * file is scanned as JSON to find that member, so neither a name that
 * holds "event": nor an "event" nested in another member is taken for it.
 * The event is checked as a body is, without building its tree (the
 * dispatcher builds the one tree an event costs); the bookkeeping before
 * it is parsed as an object whose "event" is null. */
static const char *envelope_split(apr_pool_t *p, const char *text,
                                  apr_size_t len, const char **bookkeeping,
                                  apr_size_t *blen, hf_envelope_t *e)
{
    hf_json_span_t name, value;
    hf_json_size_t size;

    /* Bytes that are not UTF-8 could only come from the configuration (a
     * handler's path); the event's own text is checked strictly below. */
    if (len < 2 || text[len - 1] != '\n'
        || hf_json_last_member(text, len - 1, HF_ENVELOPE_DEPTH,
                               HF_JSON_RAW_BYTES, &name, &value) != 0
        || name.len != strlen(EVENT_NAME)
        || memcmp(text + name.start, EVENT_NAME, name.len) != 0
        || value.start + value.len != len - 2 || text[value.start] != '{')
        return "no event member at the end";
    e->text = text + value.start;
    e->len = value.len;
    if (hf_json_measure(e->text, e->len, HF_JSON_MAX_DEPTH, 0, &size)
        || !hf_json_size_ok(&size))
        return "no event member at the end";
    *bookkeeping = apr_pstrcat(p, apr_pstrmemdup(p, text, value.start),
                               "null}", NULL);
    *blen = value.start + 5;
    return NULL;
}

const char *hf_spool_envelope_parse(apr_pool_t *p, const char *text,
                                    apr_size_t len, hf_envelope_t *e)
{
    const char *err = NULL, *head = NULL;
    apr_size_t hlen = 0;
    hf_json_t *o;

    memset(e, 0, sizeof *e);
    if ((err = envelope_split(p, text, len, &head, &hlen, e))) {
        memset(e, 0, sizeof *e);
        return err;
    }
    /* Bytes that are not UTF-8 could only come from the configuration (a
     * handler's path); the event's own text was checked strictly. */
    o = hf_json_parse_ex(p, head, hlen, HF_JSON_MAX_DEPTH,
                         HF_JSON_RAW_BYTES, &err);
    if (!o || !hf_json_is_object(o))
        err = err ? err : "not a JSON object";
    else
        err = envelope_fields(p, o, e);
    if (err) {
        memset(e, 0, sizeof *e);
        return err;
    }
    return NULL;
}

/* hf_spool_read_file, and when owner >= 0, a file of another owner is
 * refused. */
static const char *read_file(apr_pool_t *p, const char *path, long owner,
                             char **text, apr_size_t *len)
{
    /* The spool's user may have left a link or a FIFO here: never follow
     * one, never wait on one. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    apr_size_t got = 0;

    if (fd < 0)
        return apr_psprintf(p, "cannot read %s: %s", path,
                            errno == ELOOP ? "a symbolic link"
                                           : strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
        || st.st_size > HF_SPOOL_FILE_MAX) {
        close(fd);
        return apr_psprintf(p, "%s: not a spool file", path);
    }
    if (owner >= 0 && (long)st.st_uid != owner) {
        close(fd);
        return apr_psprintf(p, "%s is owned by uid %ld, not by the spool's "
                            "user (uid %ld): refused", path,
                            (long)st.st_uid, owner);
    }
    *text = apr_palloc(p, (apr_size_t)st.st_size + 1);
    while (got < (apr_size_t)st.st_size) {
        ssize_t n = read(fd, *text + got, (apr_size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* Part of a file is not the file: a spool file read while it
             * shrank, or an error, is no event. */
            const char *why = n < 0 ? strerror(errno)
                                    : apr_psprintf(p, "it ended after %"
                                                   APR_SIZE_T_FMT " of its "
                                                   "%ld bytes",
                                                   got, (long)st.st_size);
            close(fd);
            return apr_psprintf(p, "cannot read %s: %s", path, why);
        }
        got += (apr_size_t)n;
    }
    close(fd);
    (*text)[got] = '\0';
    *len = got;
    return NULL;
}

const char *hf_spool_read_file(apr_pool_t *p, const char *path, char **text,
                               apr_size_t *len)
{
    return read_file(p, path, -1, text, len);
}

const char *hf_spool_envelope_read(apr_pool_t *p, const char *path,
                                   hf_envelope_t *e)
{
    return hf_spool_envelope_read_owned(p, path, -1, e);
}

const char *hf_spool_envelope_read_owned(apr_pool_t *p, const char *path,
                                         long owner, hf_envelope_t *e)
{
    char *text;
    apr_size_t len;
    const char *err = read_file(p, path, owner, &text, &len);

    if (!err && (err = hf_spool_envelope_parse(p, text, len, e)))
        err = apr_psprintf(p, "%s: %s", path, err);
    return err;
}

int hf_spool_sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

int hf_spool_write_all(int fd, const void *data, apr_size_t len)
{
    apr_size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ENOSPC;
            return -1;
        }
        done += (apr_size_t)n;
    }
    return 0;
}

int hf_spool_write(const char *path, const void *data, apr_size_t len,
                   int keep_open)
{
    /* A new file, always: what is there (a link planted by the spool's
     * user, a leftover) is removed, never written through. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0640);

    if (fd < 0 && errno == EEXIST && unlink(path) == 0)
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0640);
    if (fd < 0)
        return -1;
    if (hf_spool_write_all(fd, data, len) != 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        errno = saved;
        return -1;
    }
    if (keep_open)
        return fd;
    if (fdatasync(fd) != 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        errno = saved;
        return -1;
    }
    close(fd);
    return 0;
}

const char *hf_spool_rewrite(apr_pool_t *p, const char *dir,
                             const hf_envelope_t *e, const char *from,
                             const char *to)
{
    apr_size_t len;
    char *text = hf_spool_envelope_encode(p, e, &len);
    const char *tmp = hf_spool_path(p, dir, "tmp", e->name);
    const char *src = hf_spool_path(p, dir, from, e->name);
    const char *dst = hf_spool_path(p, dir, to, e->name);

    /* Replace the file where it is, then move it: never two copies. */
    if (hf_spool_write(tmp, text, len, 0) != 0 || rename(tmp, src) != 0
        || (strcmp(from, to) != 0 && rename(src, dst) != 0)) {
        const char *err = apr_psprintf(p, "cannot move %s to %s/: %s", src, to,
                                       strerror(errno));
        unlink(tmp);
        return err;
    }
    hf_spool_sync_dir(hf_spool_path(p, dir, to, NULL));
    if (strcmp(from, to) != 0)
        hf_spool_sync_dir(hf_spool_path(p, dir, from, NULL));
    return NULL;
}

apr_array_header_t *hf_spool_list(apr_pool_t *p, const char *dir,
                                  const char *state)
{
    DIR *d = opendir(hf_spool_path(p, dir, state, NULL));
    apr_array_header_t *names;
    struct dirent *de;

    if (!d)
        return NULL;
    names = apr_array_make(p, 16, sizeof(char *));
    while ((de = readdir(d)))
        if (hf_spool_is_event_name(de->d_name))
            APR_ARRAY_PUSH(names, char *) = apr_pstrdup(p, de->d_name);
    closedir(d);
    return names;
}

int hf_spool_count(apr_pool_t *p, const char *dir, const char *state)
{
    apr_array_header_t *names = hf_spool_list(p, dir, state);

    return names ? names->nelts : -1;
}

int hf_spool_is_event_name(const char *name)
{
    apr_size_t n = strlen(name);

    return name[0] != '.' && n > 5 && !strcmp(name + n - 5, ".json");
}
