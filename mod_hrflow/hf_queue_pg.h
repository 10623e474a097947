/*
 * hf_queue_pg.h - what the queue's own files share (hf_queue.c,
 * hf_queue_schema.c, hf_queue_admin.c): the connection and small libpq
 * helpers.  Nothing outside libhrflow_queue includes it.
 */
#ifndef HF_QUEUE_PG_H
#define HF_QUEUE_PG_H

#include <libpq-fe.h>
#include "hf_queue.h"

struct hf_queue_t {
    PGconn *conn;
    hf_queue_spec_t spec;        /* strings in pool */
    apr_pool_t *pool;            /* the connection's own */
    const char *secret;          /* the password, from spec or URI: scrubbed
                                    from every reason */
    int listening;               /* LISTEN issued on this connection */
    int schema;                  /* version found, -1 unknown, 0 none */
    const char *unusable;        /* why no connection can ever help (a bad
                                    HrflowQueueName), or NULL */
};

/* SQL text with every @N@ replaced by the queue's name (a checked
 * identifier, safe to put in SQL as it is). */
const char *hf_queue_sql(apr_pool_t *p, const hf_queue_t *q, const char *sql);

/* Runs sql with text parameters (NULL: SQL NULL), results in binary.
 * NULL and *res on success (PGRES_COMMAND_OK or TUPLES_OK), else the
 * reason (what, then the server's message, the password scrubbed) and no
 * result. */
const char *hf_queue_exec(apr_pool_t *p, hf_queue_t *q, const char *what,
                          const char *sql, int n, const char *const *values,
                          PGresult **res);

/* libpq's message as a reason: one line, scrubbed of the password. */
const char *hf_queue_reason(apr_pool_t *p, const hf_queue_t *q,
                            const char *what, const char *msg);

/* Columns of a binary result. */
apr_int64_t hf_queue_col_i64(const PGresult *r, int row, int col);
int hf_queue_col_i32(const PGresult *r, int row, int col);
/* A copy in p, NUL-terminated; NULL for SQL NULL.  *len when len. */
const char *hf_queue_col_text(apr_pool_t *p, const PGresult *r, int row,
                              int col, apr_size_t *len);

/* The schema's version in the database, 0 when there is none. */
const char *hf_queue_read_version(apr_pool_t *p, hf_queue_t *q, int *version);

/* items as a PostgreSQL array literal, elements quoted (NULL: NULL). */
const char *hf_queue_array(apr_pool_t *p, const char *const *items, int n);

/* The decimal text of an integer, in p. */
const char *hf_queue_i64(apr_pool_t *p, apr_int64_t v);

/* A row's envelope (binary column col) parsed into env. */
const char *hf_queue_col_envelope(apr_pool_t *p, const PGresult *r, int row,
                                  int col, hf_envelope_t *env);

#endif
