/*
 * hf_queue.c - the shared queue in PostgreSQL (SPEC section 8): the
 * connection, and what receivers and workers do to events (accept, claim,
 * outcomes, wait).  The rules themselves are in the schema's functions
 * (hf_queue_schema.c), so that every host keeps the same ones; hf_queue.h
 * says what they are.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "hf_queue_pg.h"

/* A lease outlives the handler's timeout by the kill grace and this much
 * more, so that only a worker that stopped or lost the database loses it. */
#define LEASE_MARGIN_SEC 5

/* How long a cancelled statement may take to end before its connection
 * is given up. */
#define CANCEL_WAIT_MS 1000

/* ---- reasons: never with the password --------------------------------- */

/* Replaces every occurrence of secret in text (when there is one). */
static char *scrub(apr_pool_t *p, const char *text, const char *secret)
{
    apr_size_t slen = secret ? strlen(secret) : 0;
    const char *at;
    char *out = "";

    if (!slen)
        return apr_pstrdup(p, text);
    while ((at = strstr(text, secret))) {
        out = apr_pstrcat(p, out, apr_pstrmemdup(p, text, at - text), "***",
                          NULL);
        text = at + slen;
    }
    return apr_pstrcat(p, out, text, NULL);
}

/* %XX decoded (a URI's password as libpq reads it). */
static char *percent_decode(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_palloc(p, len + 1), *o = out;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && apr_isxdigit(s[i + 1])
            && apr_isxdigit(s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

const char *hf_queue_url_password(apr_pool_t *p, const char *url)
{
    const char *scheme = strstr(url, "://"), *at, *colon, *param;

    if (scheme) {
        const char *auth = scheme + 3;
        apr_size_t alen = strcspn(auth, "/?");
        at = memchr(auth, '@', alen);
        /* The last '@' ends the user part: user:p@ss@host. */
        while (at && memchr(at + 1, '@', alen - (apr_size_t)(at + 1 - auth)))
            at = memchr(at + 1, '@', alen - (apr_size_t)(at + 1 - auth));
        colon = at ? memchr(auth, ':', (apr_size_t)(at - auth)) : NULL;
        if (colon && at > colon + 1)
            return apr_pstrmemdup(p, colon + 1, (apr_size_t)(at - colon - 1));
    }
    /* A query parameter (URI) or a key=value connection string. */
    for (param = url; (param = strstr(param, "password=")); param += 9)
        if (param == url || strchr("?& \t", param[-1])) {
            apr_size_t n = strcspn(param + 9, "& \t");
            if (n)
                return apr_pstrmemdup(p, param + 9, n);
        }
    return NULL;
}

const char *hf_queue_url_redact(apr_pool_t *p, const char *url)
{
    const char *pw = hf_queue_url_password(p, url);
    return pw ? scrub(p, url, pw) : url;
}

const char *hf_queue_reason(apr_pool_t *p, const hf_queue_t *q,
                            const char *what, const char *msg)
{
    char *text = apr_pstrdup(p, msg ? msg : "unknown error"), *c;
    apr_size_t n = strlen(text);
    const char *url_pw;

    /* libpq ends its messages with a newline and may spread them over
     * several lines: one log line reads better. */
    char *o;

    while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = '\0';
    for (c = o = text; *c; c++) {
        char ch = *c == '\n' || *c == '\t' ? ' ' : *c;
        if (ch != ' ' || (o > text && o[-1] != ' '))
            *o++ = ch;
    }
    *o = '\0';
    text = scrub(p, text, q->secret);
    if ((url_pw = hf_queue_url_password(p, q->spec.url))) {
        text = scrub(p, text, url_pw);
        text = scrub(p, text, percent_decode(p, url_pw, strlen(url_pw)));
    }
    return what ? apr_pstrcat(p, what, ": ", text, NULL) : text;
}

/* ---- small libpq helpers ------------------------------------------------ */

const char *hf_queue_sql(apr_pool_t *p, const hf_queue_t *q, const char *sql)
{
    const char *at;
    char *out = "";

    while ((at = strstr(sql, "@N@"))) {
        out = apr_pstrcat(p, out, apr_pstrmemdup(p, sql, at - sql),
                          q->spec.name, NULL);
        sql = at + 3;
    }
    return apr_pstrcat(p, out, sql, NULL);
}

const char *hf_queue_exec(apr_pool_t *p, hf_queue_t *q, const char *what,
                          const char *sql, int n, const char *const *values,
                          PGresult **res)
{
    PGresult *r;
    ExecStatusType st;
    const char *err;

    *res = NULL;
    if (!q->conn || PQstatus(q->conn) != CONNECTION_OK)
        return apr_pstrcat(p, what, ": not connected to the queue", NULL);
    r = PQexecParams(q->conn, hf_queue_sql(p, q, sql), n, NULL, values, NULL,
                     NULL, 1);
    st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *res = r;
        return NULL;
    }
    err = hf_queue_reason(p, q, what,
                          r ? PQresultErrorMessage(r)
                            : PQerrorMessage(q->conn));
    PQclear(r);
    return err;
}

apr_int64_t hf_queue_col_i64(const PGresult *r, int row, int col)
{
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    apr_uint64_t x = 0;
    int i;

    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    for (i = 0; i < 8; i++)
        x = (x << 8) | v[i];
    return (apr_int64_t)x;
}

int hf_queue_col_i32(const PGresult *r, int row, int col)
{
    apr_uint32_t x;

    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 4)
        return 0;
    memcpy(&x, PQgetvalue(r, row, col), 4);
    return (int)(apr_int32_t)ntohl(x);
}

const char *hf_queue_col_text(apr_pool_t *p, const PGresult *r, int row,
                              int col, apr_size_t *len)
{
    apr_size_t n;

    if (PQgetisnull(r, row, col))
        return NULL;
    n = (apr_size_t)PQgetlength(r, row, col);
    if (len)
        *len = n;
    return apr_pstrmemdup(p, PQgetvalue(r, row, col), n);
}

const char *hf_queue_i64(apr_pool_t *p, apr_int64_t v)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT, v);
}

const char *hf_queue_col_envelope(apr_pool_t *p, const PGresult *r, int row,
                                  int col, hf_envelope_t *env)
{
    apr_size_t len = 0;
    const char *text = hf_queue_col_text(p, r, row, col, &len);

    if (!text)
        return "no envelope";
    return hf_spool_envelope_parse(p, text, len, env);
}

/* ---- the connection ----------------------------------------------------- */

const char *hf_queue_read_version(apr_pool_t *p, hf_queue_t *q, int *version)
{
    PGresult *r = NULL;
    const char *err = hf_queue_exec(
        p, q, "cannot read the queue's schema",
        "SELECT (to_regclass('@N@_schema') IS NOT NULL)::int4", 0, NULL, &r);

    *version = 0;
    if (err)
        return err;
    if (PQntuples(r) == 1 && hf_queue_col_i32(r, 0, 0)) {
        PQclear(r);
        err = hf_queue_exec(p, q, "cannot read the queue's schema",
                            "SELECT coalesce(max(version), 0) "
                            "FROM @N@_schema",
                            0, NULL, &r);
        if (err)
            return err;
        *version = PQntuples(r) == 1 ? hf_queue_col_i32(r, 0, 0) : 0;
    }
    PQclear(r);
    return NULL;
}

/* Checks the schema's version: NULL when it is this program's. */
static const char *check_schema(apr_pool_t *p, hf_queue_t *q)
{
    const char *err = hf_queue_read_version(p, q, &q->schema);

    if (err) {
        q->schema = -1;
        return err;
    }
    if (q->schema == 0)
        return apr_psprintf(p, "the queue's schema (%s_events) is missing: "
                            "run hrflowctl init URL", q->spec.name);
    if (q->schema < HF_QUEUE_SCHEMA_VERSION)
        return apr_psprintf(p, "the queue's schema %s is at version %d, this "
                            "program needs %d: run hrflowctl init URL",
                            q->spec.name, q->schema, HF_QUEUE_SCHEMA_VERSION);
    if (q->schema > HF_QUEUE_SCHEMA_VERSION)
        return apr_psprintf(p, "the queue's schema %s is at version %d, newer "
                            "than this program's %d: upgrade mod_hrflow",
                            q->spec.name, q->schema, HF_QUEUE_SCHEMA_VERSION);
    return NULL;
}

/* After a connection is made: every statement bounded by the timeout. */
static const char *session_setup(apr_pool_t *p, hf_queue_t *q)
{
    const char *v[1];
    PGresult *r = NULL;
    const char *err;

    v[0] = apr_psprintf(p, "%dms", q->spec.timeout_ms);
    err = hf_queue_exec(p, q, "cannot set up the queue's session",
                        "SELECT set_config('statement_timeout', $1, false)",
                        1, v, &r);
    PQclear(r);
    q->listening = 0;
    return err;
}

/* The server's notices (a shutdown's "terminating connection") would go
 * to standard error, past the caller's log: the error that follows them
 * says what matters. */
static void ignore_notice(void *arg, const char *message)
{
}

static const char *connect_now(apr_pool_t *p, hf_queue_t *q)
{
    const char *keys[10], *vals[10];
    int n = 0;

    keys[n] = "application_name";
    vals[n++] = q->spec.app ? q->spec.app : "hrflow";
    /* A database host cut off (a partition) shows no error on an open
     * connection: unanswered data fails after the timeout, and an idle
     * connection (a worker's LISTEN) is probed.  The URI may say
     * otherwise. */
    keys[n] = "tcp_user_timeout";
    vals[n++] = apr_itoa(p, q->spec.timeout_ms);
    keys[n] = "keepalives_idle";
    vals[n++] = "10";
    keys[n] = "keepalives_interval";
    vals[n++] = "5";
    keys[n] = "keepalives_count";
    vals[n++] = "3";
    /* The URI second: what it sets wins over the name above, and what
     * follows it wins over the URI. */
    keys[n] = "dbname";
    vals[n++] = q->spec.url;
    keys[n] = "connect_timeout";
    vals[n++] = apr_psprintf(p, "%d", (q->spec.timeout_ms + 999) / 1000);
    if (q->spec.password) {
        keys[n] = "password";
        vals[n++] = q->spec.password;
    }
    keys[n] = NULL;
    vals[n] = NULL;
    if (q->conn)
        PQfinish(q->conn);
    q->conn = PQconnectdbParams(keys, vals, 1);
    if (!q->conn)
        return "cannot connect to the queue: out of memory";
    PQsetNoticeProcessor(q->conn, ignore_notice, NULL);
    if (PQstatus(q->conn) != CONNECTION_OK)
        return hf_queue_reason(p, q, "cannot connect to the queue",
                               PQerrorMessage(q->conn));
    return session_setup(p, q);
}

static apr_status_t close_cleanup(void *data)
{
    hf_queue_t *q = data;

    if (q->conn)
        PQfinish(q->conn);
    q->conn = NULL;
    return APR_SUCCESS;
}

const char *hf_queue_open(apr_pool_t *p, const hf_queue_spec_t *spec,
                          hf_queue_t **qp)
{
    apr_pool_t *own;
    hf_queue_t *q;
    const char *err;

    apr_pool_create(&own, p);
    q = apr_pcalloc(own, sizeof *q);
    q->pool = own;
    q->schema = -1;
    q->spec.url = apr_pstrdup(own, spec->url ? spec->url : "");
    q->spec.password = spec->password ? apr_pstrdup(own, spec->password)
                                      : NULL;
    q->spec.name = apr_pstrdup(own, spec->name ? spec->name
                                               : HF_DEFAULT_QUEUE_NAME);
    q->spec.timeout_ms = spec->timeout_ms > 0 ? spec->timeout_ms
                                              : HF_DEFAULT_QUEUE_TIMEOUT_MS;
    q->spec.app = spec->app ? apr_pstrdup(own, spec->app) : NULL;
    q->secret = q->spec.password;
    apr_pool_cleanup_register(own, q, close_cleanup, apr_pool_cleanup_null);
    *qp = q;
    /* The name goes into SQL as it is: never one that is not checked. */
    if ((err = hf_config_queue_name_check(q->spec.name)))
        return q->unusable = apr_psprintf(own, "HrflowQueueName %s: %s",
                                          hf_log_escape(own, q->spec.name),
                                          err);
    if ((err = connect_now(p, q)))
        return err;
    return check_schema(p, q);
}

const char *hf_queue_reset(apr_pool_t *p, hf_queue_t *q)
{
    const char *err = q->unusable ? q->unusable : connect_now(p, q);
    return err ? err : check_schema(p, q);
}

int hf_queue_ok(const hf_queue_t *q)
{
    return q && q->conn && PQstatus(q->conn) == CONNECTION_OK;
}

int hf_queue_schema_version(const hf_queue_t *q)
{
    return q ? q->schema : -1;
}

void hf_queue_close(hf_queue_t *q)
{
    if (q)
        apr_pool_destroy(q->pool);
}

/* ---- receivers ---------------------------------------------------------- */

/* s as an element of a PostgreSQL array literal: quoted, \ and " escaped;
 * NULL for a NULL. */
static const char *array_item(apr_pool_t *p, const char *s)
{
    char *out, *o;

    if (!s)
        return "NULL";
    out = o = apr_palloc(p, 2 * strlen(s) + 3);
    *o++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            *o++ = '\\';
        *o++ = *s;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* Joined once at the end: appending item by item would copy the literal
 * so far each time, the square of a commit group's size in memory. */
const char *hf_queue_array(apr_pool_t *p, const char *const *items, int n)
{
    apr_array_header_t *parts = apr_array_make(p, n > 0 ? n : 1,
                                               sizeof(char *));
    int i;

    for (i = 0; i < n; i++)
        APR_ARRAY_PUSH(parts, const char *) = array_item(p, items[i]);
    return apr_pstrcat(p, "{", apr_array_pstrcat(p, parts, ','), "}", NULL);
}

/* Waits until the connection has a result ready or deadline: 0, or -1
 * when the deadline passed first.  A broken connection counts as ready:
 * PQgetResult says what broke. */
static int wait_ready(hf_queue_t *q, apr_time_t deadline)
{
    struct pollfd fd;

    while (PQisBusy(q->conn)) {
        apr_time_t left = deadline - apr_time_now();
        if (left <= 0)
            return -1;
        fd.fd = PQsocket(q->conn);
        fd.events = POLLIN;
        if (poll(&fd, 1, (int)((left + 999) / 1000)) < 0 && errno != EINTR)
            return 0;
        if (!PQconsumeInput(q->conn))
            return 0;
    }
    return 0;
}

/* The result of the statement just sent, awaited within the timeout.
 * The server's statement_timeout does not bound it: a COMMIT waits for a
 * synchronous standby (or a stalled disk) after the statement ends, for
 * as long as it takes.  Past the timeout the statement is cancelled (a
 * cancelled wait for the standby leaves the transaction committed
 * locally: never a success, then) and, when even that is not answered
 * soon, the connection is closed.  NULL and *res (the last result, an
 * error first), or why not. */
static const char *await_result(apr_pool_t *p, hf_queue_t *q,
                                const char *what, PGresult **res)
{
    apr_time_t deadline = apr_time_now()
                          + apr_time_from_msec(q->spec.timeout_ms);
    PGresult *last = NULL, *r;
    int late = 0;

    for (;;) {
        if (wait_ready(q, deadline) != 0) {
            PGcancel *c;
            char buf[256];
            if (late) {
                PQclear(last);
                PQfinish(q->conn);
                q->conn = NULL;
                return apr_psprintf(p, "%s: no answer within %d ms, even to "
                                    "a cancel: connection closed", what,
                                    q->spec.timeout_ms);
            }
            if ((c = PQgetCancel(q->conn))) {
                PQcancel(c, buf, sizeof buf);
                PQfreeCancel(c);
            }
            late = 1;
            deadline = apr_time_now() + apr_time_from_msec(CANCEL_WAIT_MS);
            continue;
        }
        if (!(r = PQgetResult(q->conn)))
            break;
        if (last && PQresultStatus(last) == PGRES_FATAL_ERROR)
            PQclear(r);
        else {
            PQclear(last);
            last = r;
        }
    }
    if (late) {
        PQclear(last);
        return apr_psprintf(p, "%s: no commit within %d ms (cancelled; with "
                            "a synchronous standby, it may have committed "
                            "on the primary only)", what,
                            q->spec.timeout_ms);
    }
    if (!last)
        return hf_queue_reason(p, q, what, PQerrorMessage(q->conn));
    *res = last;
    return NULL;
}

const char *hf_queue_accept(apr_pool_t *p, hf_queue_t *q,
                            const hf_envelope_t *const *envs, int n)
{
    const char **values, *sql, *err;
    apr_array_header_t *params;
    int *lengths, *formats, i, np = 4;
    const char **keys = apr_pcalloc(p, n * sizeof *keys + 1);
    const char **programs = apr_pcalloc(p, n * sizeof *programs + 1);
    const char **timeouts = apr_pcalloc(p, n * sizeof *timeouts + 1);
    const char **received = apr_pcalloc(p, n * sizeof *received + 1);
    PGresult *r;

    if (n <= 0)
        return NULL;
    if (!hf_queue_ok(q))
        return "cannot commit to the queue: not connected";
    values = apr_pcalloc(p, (n + np) * sizeof *values);
    lengths = apr_pcalloc(p, (n + np) * sizeof *lengths);
    formats = apr_pcalloc(p, (n + np) * sizeof *formats);
    params = apr_array_make(p, n, sizeof(char *));
    for (i = 0; i < n; i++) {
        const hf_envelope_t *e = envs[i];
        apr_size_t len;
        keys[i] = e->order_key;
        programs[i] = e->argv[0];
        timeouts[i] = apr_itoa(p, e->timeout);
        received[i] = hf_queue_i64(p, e->received);
        /* The envelope as bytes (binary bytea): its handler's path need not
         * be in the database's encoding. */
        values[np + i] = hf_spool_envelope_encode(p, e, &len);
        lengths[np + i] = (int)len;
        formats[np + i] = 1;
        APR_ARRAY_PUSH(params, const char *) =
            apr_psprintf(p, "$%d::bytea", np + i + 1);
    }
    values[0] = hf_queue_array(p, keys, n);
    values[1] = hf_queue_array(p, programs, n);
    values[2] = hf_queue_array(p, timeouts, n);
    values[3] = hf_queue_array(p, received, n);
    sql = apr_pstrcat(p, "SELECT @N@_accept(ARRAY[",
                      apr_array_pstrcat(p, params, ','),
                      "], $1::text[], $2::text[], $3::int4[], $4::int8[])",
                      NULL);
    if (!PQsendQueryParams(q->conn, hf_queue_sql(p, q, sql), n + np, NULL,
                           values, lengths, formats, 1))
        return hf_queue_reason(p, q, "cannot commit to the queue",
                               PQerrorMessage(q->conn));
    if ((err = await_result(p, q, "cannot commit to the queue", &r)))
        return err;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        PQclear(r);
        return NULL;
    }
    err = hf_queue_reason(p, q, "cannot commit to the queue",
                          PQresultErrorMessage(r));
    PQclear(r);
    return err;
}

/* ---- workers ------------------------------------------------------------ */

const char *hf_queue_claim(apr_pool_t *p, hf_queue_t *q, const char *worker,
                           const char *const *programs, int max,
                           apr_array_header_t *claims)
{
    const char *v[4], *err;
    PGresult *r = NULL;
    int n = 0, i;

    while (programs && programs[n])
        n++;
    if (n == 0 || max <= 0)
        return NULL;
    v[0] = worker;
    v[1] = hf_queue_array(p, programs, n);
    v[2] = apr_itoa(p, max);
    v[3] = apr_itoa(p, HF_KILL_GRACE_MS / 1000 + 1 + LEASE_MARGIN_SEC);
    err = hf_queue_exec(p, q, "cannot claim events",
                        "SELECT * FROM @N@_claim($1, $2::text[], $3::int4, "
                        "$4::int4)",
                        4, v, &r);
    if (err)
        return err;
    for (i = 0; i < PQntuples(r); i++) {
        hf_queue_claim_t *c = apr_pcalloc(p, sizeof *c);
        c->id = hf_queue_col_i64(r, i, 0);
        c->token = hf_queue_col_i64(r, i, 1);
        if ((err = hf_queue_col_envelope(p, r, i, 3, &c->env))) {
            /* Claimed and unreadable: it fails for good rather than
             * coming back with every lease. */
            int fenced;
            err = apr_psprintf(p, "event %" APR_INT64_T_FMT
                               " has a bad envelope: %s", c->id, err);
            hf_queue_fail(p, q, c, "bad envelope", err, strlen(err),
                          &fenced);
            continue;
        }
        c->env.attempt = hf_queue_col_i32(r, i, 2);
        c->env.last_result = hf_queue_col_text(p, r, i, 4, NULL);
        /* The lease was given for the row's timeout: the handler gets
         * that one, never the envelope's (which whoever writes rows could
         * make longer, letting the lease pass while it still runs). */
        c->env.timeout = hf_queue_col_i32(r, i, 5);
        if (c->env.timeout < 1 || c->env.timeout > HF_MAX_TIMEOUT)
            c->env.timeout = c->env.timeout < 1 ? 1 : HF_MAX_TIMEOUT;
        APR_ARRAY_PUSH(claims, hf_queue_claim_t *) = c;
    }
    PQclear(r);
    return NULL;
}

/* Runs @N@_finish and reads whether the claim still held. */
static const char *finish(apr_pool_t *p, hf_queue_t *q,
                          const hf_queue_claim_t *c, const char *state,
                          const char *result, const char *output,
                          apr_size_t output_len, int *fenced)
{
    const char *v[5];
    int lengths[5] = {0, 0, 0, 0, (int)output_len};
    int formats[5] = {0, 0, 0, 0, 1};
    PGresult *r;
    const char *err;

    v[0] = hf_queue_i64(p, c->id);
    v[1] = hf_queue_i64(p, c->token);
    v[2] = state;
    v[3] = result;
    v[4] = output;
    *fenced = 0;
    if (!hf_queue_ok(q))
        return "cannot store an outcome: not connected to the queue";
    r = PQexecParams(q->conn,
                     hf_queue_sql(p, q, "SELECT @N@_finish($1::int8, $2::int8,"
                                        " $3, $4, $5::bytea)::int4"),
                     5, NULL, v, lengths, formats, 1);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *fenced = !hf_queue_col_i32(r, 0, 0);
        PQclear(r);
        return NULL;
    }
    err = hf_queue_reason(p, q, "cannot store an outcome",
                          r ? PQresultErrorMessage(r)
                            : PQerrorMessage(q->conn));
    PQclear(r);
    return err;
}

const char *hf_queue_done(apr_pool_t *p, hf_queue_t *q,
                          const hf_queue_claim_t *c, int *fenced)
{
    return finish(p, q, c, "done", NULL, NULL, 0, fenced);
}

const char *hf_queue_fail(apr_pool_t *p, hf_queue_t *q,
                          const hf_queue_claim_t *c, const char *status,
                          const char *output, apr_size_t output_len,
                          int *fenced)
{
    return finish(p, q, c, "failed", status, output, output_len, fenced);
}

const char *hf_queue_retry(apr_pool_t *p, hf_queue_t *q,
                           const hf_queue_claim_t *c, apr_time_t due,
                           const char *result, int *fenced)
{
    const char *v[4], *err;
    PGresult *r = NULL;

    v[0] = hf_queue_i64(p, c->id);
    v[1] = hf_queue_i64(p, c->token);
    /* A delay, not a time: the database's clock decides when. */
    v[2] = hf_queue_i64(p, due > apr_time_now() ? due - apr_time_now() : 0);
    v[3] = result;
    *fenced = 0;
    err = hf_queue_exec(p, q, "cannot store a retry",
                        "SELECT @N@_retry($1::int8, $2::int8, $3::int8, "
                        "$4)::int4",
                        4, v, &r);
    if (err)
        return err;
    *fenced = PQntuples(r) != 1 || !hf_queue_col_i32(r, 0, 0);
    PQclear(r);
    return NULL;
}

const char *hf_queue_release(apr_pool_t *p, hf_queue_t *q,
                             const hf_queue_claim_t *c)
{
    const char *v[2], *err;
    PGresult *r = NULL;

    v[0] = hf_queue_i64(p, c->id);
    v[1] = hf_queue_i64(p, c->token);
    err = hf_queue_exec(p, q, "cannot hand back a claim",
                        "SELECT @N@_release($1::int8, $2::int8)::int4", 2, v,
                        &r);
    if (!err)
        PQclear(r);
    return err;
}

const char *hf_queue_purge(apr_pool_t *p, hf_queue_t *q, int keep_sec,
                           int *purged)
{
    const char *v[1], *err;
    PGresult *r = NULL;

    v[0] = apr_itoa(p, keep_sec);
    *purged = 0;
    err = hf_queue_exec(p, q, "cannot purge done events",
                        "SELECT @N@_purge($1::int4)", 1, v, &r);
    if (err)
        return err;
    *purged = PQntuples(r) == 1 ? (int)hf_queue_col_i64(r, 0, 0) : 0;
    PQclear(r);
    return NULL;
}

/* Reads what the server sent; 1 when it held a notification, 0 not, -1
 * when the connection broke. */
static int take_notifications(hf_queue_t *q)
{
    PGnotify *note;
    int got = 0;

    if (!PQconsumeInput(q->conn) || PQstatus(q->conn) != CONNECTION_OK)
        return -1;
    while ((note = PQnotifies(q->conn))) {
        PQfreemem(note);
        got = 1;
    }
    return got;
}

int hf_queue_fd(apr_pool_t *p, hf_queue_t *q)
{
    if (!hf_queue_ok(q))
        return -1;
    if (!q->listening) {
        PGresult *r = NULL;
        if (hf_queue_exec(p, q, "cannot listen", "LISTEN @N@", 0, NULL, &r))
            return -1;
        PQclear(r);
        q->listening = 1;
    }
    return PQsocket(q->conn);
}

int hf_queue_notified(hf_queue_t *q)
{
    return hf_queue_ok(q) ? take_notifications(q) : -1;
}

int hf_queue_wait(apr_pool_t *p, hf_queue_t *q, apr_interval_time_t timeout,
                  int wake_fd)
{
    struct pollfd fds[2];
    int n = 1, got;

    if ((fds[0].fd = hf_queue_fd(p, q)) < 0)
        return -1;
    /* Notifications that came with earlier results count at once. */
    if ((got = take_notifications(q)) != 0)
        return got;
    fds[0].events = POLLIN;
    fds[1].fd = wake_fd;
    fds[1].events = POLLIN;
    if (wake_fd >= 0)
        n = 2;
    if (poll(fds, n, (int)((timeout + 999) / 1000)) <= 0
        || !(fds[0].revents & (POLLIN | POLLERR | POLLHUP)))
        return 0;
    return take_notifications(q);
}
