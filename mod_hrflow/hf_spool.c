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

#define EVENT_MEMBER "\"event\":"

const char *hf_spool_path(apr_pool_t *p, const char *dir, const char *state,
                          const char *name)
{
    return apr_pstrcat(p, dir, "/", state, name ? "/" : "", name, NULL);
}

/* A folder of the spool, created when missing, owned by uid:gid. */
static const char *prepare_folder(apr_pool_t *p, const char *path, int uid,
                                  int gid)
{
    struct stat st;

    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return apr_psprintf(p, "cannot create %s: %s", path, strerror(errno));
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return apr_psprintf(p, "%s is not a directory", path);
    if (uid >= 0 && st.st_uid != (uid_t)uid
        && chown(path, (uid_t)uid, (gid_t)gid) != 0)
        return apr_psprintf(p, "cannot give %s to the server's user: %s",
                            path, strerror(errno));
    return NULL;
}

const char *hf_spool_prepare(apr_pool_t *p, const char *dir, int uid, int gid)
{
    const char *err = prepare_folder(p, dir, uid, gid);
    int i;

    for (i = 0; !err && hf_spool_states[i]; i++)
        err = prepare_folder(p, hf_spool_path(p, dir, hf_spool_states[i],
                                              NULL), uid, gid);
    return err;
}

const char *hf_spool_order_key(apr_pool_t *p, const hf_event_t *ev)
{
    static const char *const objects[] = {"profile", "job", NULL};
    int i;

    for (i = 0; objects[i]; i++) {
        hf_json_t *o = hf_json_get(ev->json, objects[i]);
        const char *key = o && hf_json_is_object(o)
                              ? hf_json_get_string(o, "key") : NULL;
        if (key && *key)
            return apr_pstrcat(p, objects[i], ":", key, NULL);
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
    hf_hex_encode(digest, 4, tag);
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

char *hf_envelope_encode(apr_pool_t *p, const hf_envelope_t *e,
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

/* Whether text is the JSON of member, so that a file cannot pass off
 * something else (a nested "event": of another member) as its event. */
static int is_member_text(apr_pool_t *p, const hf_json_t *member,
                          const char *text, apr_size_t len)
{
    const char *err, *a, *b;
    apr_size_t alen, blen;
    hf_json_t *j;

    if (!member || !hf_json_is_object(member))
        return 0;
    j = hf_json_parse(p, text, len, &err);
    if (!j || !hf_json_is_object(j))
        return 0;
    a = hf_json_text(p, j, &alen);
    b = hf_json_text(p, member, &blen);
    return alen == blen && memcmp(a, b, alen) == 0;
}

const char *hf_envelope_parse(apr_pool_t *p, const char *text, apr_size_t len,
                              hf_envelope_t *e)
{
    const char *err = NULL, *start;
    hf_json_t *o = hf_json_parse(p, text, len, &err);

    memset(e, 0, sizeof *e);
    if (!o || !hf_json_is_object(o))
        return err ? err : "not a JSON object";
    if ((err = envelope_fields(p, o, e)))
        return err;
    /* The event's own text: from "event": to the envelope's closing brace.
     * The members before it are ours, and a quote inside a JSON string is
     * always escaped, so the first "event": is this member. */
    start = strstr(text, EVENT_MEMBER);
    if (!start || len < 3 || text[len - 1] != '\n' || text[len - 2] != '}')
        return "no event member at the end";
    start += strlen(EVENT_MEMBER);
    e->text = start;
    e->len = (apr_size_t)(text + len - 2 - start);
    if (!is_member_text(p, hf_json_get(o, "event"), e->text, e->len))
        return "no event member at the end";
    return NULL;
}

const char *hf_spool_read_file(apr_pool_t *p, const char *path, char **text,
                               apr_size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    apr_size_t got = 0;

    if (fd < 0)
        return apr_psprintf(p, "cannot read %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || st.st_size > 64 * 1024 * 1024) {
        close(fd);
        return apr_psprintf(p, "%s: not a spool file", path);
    }
    *text = apr_palloc(p, (apr_size_t)st.st_size + 1);
    while (got < (apr_size_t)st.st_size) {
        ssize_t n = read(fd, *text + got, (apr_size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (apr_size_t)n;
    }
    close(fd);
    (*text)[got] = '\0';
    *len = got;
    return NULL;
}

const char *hf_envelope_read(apr_pool_t *p, const char *path, hf_envelope_t *e)
{
    char *text;
    apr_size_t len;
    const char *err = hf_spool_read_file(p, path, &text, &len);

    if (!err && (err = hf_envelope_parse(p, text, len, e)))
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

int hf_write_all(int fd, const void *data, apr_size_t len)
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
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);

    if (fd < 0)
        return -1;
    if (hf_write_all(fd, data, len) != 0) {
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
    char *text = hf_envelope_encode(p, e, &len);
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
