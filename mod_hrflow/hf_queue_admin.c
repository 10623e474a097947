/*
 * hf_queue_admin.c - what administrators and monitors read from the queue
 * (hrflowctl list|show|requeue, mod_status counts, the health check).
 */
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include "hf_queue_pg.h"

const char *hf_queue_counts(apr_pool_t *p, hf_queue_t *q,
                            hf_queue_counts_t *counts)
{
    PGresult *r = NULL;
    const char *err;
    int i;

    memset(counts, 0, sizeof *counts);
    err = hf_queue_exec(p, q, "cannot count the queue's events",
                        "SELECT * FROM @N@_counts()",
                        0, NULL, &r);
    if (err)
        return err;
    for (i = 0; i < PQntuples(r); i++) {
        const char *state = PQgetvalue(r, i, 0);
        apr_int64_t n = hf_queue_col_i64(r, i, 1);
        if (!strcmp(state, "queued"))
            counts->queued = n;
        else if (!strcmp(state, "retry"))
            counts->retry = n;
        else if (!strcmp(state, "running"))
            counts->running = n;
        else if (!strcmp(state, "failed"))
            counts->failed = n;
        else if (!strcmp(state, "done"))
            counts->done = n;
    }
    PQclear(r);
    return NULL;
}

const char *hf_queue_writable(apr_pool_t *p, hf_queue_t *q)
{
    PGresult *r = NULL;
    const char *err = hf_queue_exec(
        p, q, "cannot ask whether the queue takes writes",
        "SELECT current_setting('transaction_read_only') = 'on', "
        "pg_is_in_recovery()", 0, NULL, &r);
    int read_only, standby;

    if (err)
        return err;
    read_only = PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 1
                && PQgetvalue(r, 0, 0)[0];
    standby = PQntuples(r) == 1 && PQgetlength(r, 0, 1) == 1
              && PQgetvalue(r, 0, 1)[0];
    PQclear(r);
    if (standby)
        return "the queue's database is a standby (read-only): no commit "
               "can succeed there";
    if (read_only)
        return "the queue's database is read-only "
               "(default_transaction_read_only): no commit can succeed";
    return NULL;
}

#define ROW_COLUMNS \
    "id, state, attempt, (extract(epoch FROM received) * 1000000)::int8, " \
    "(extract(epoch FROM due) * 1000000)::int8, " \
    "CASE WHEN state = 'running' THEN worker END, last_result, output, " \
    "envelope"

static void read_row(apr_pool_t *p, const PGresult *r, int i,
                     hf_queue_row_t *row)
{
    apr_size_t len = 0;
    const char *err;

    memset(row, 0, sizeof *row);
    row->id = hf_queue_col_i64(r, i, 0);
    row->state = hf_queue_col_text(p, r, i, 1, NULL);
    row->attempt = hf_queue_col_i32(r, i, 2);
    row->received = hf_queue_col_i64(r, i, 3);
    row->due = hf_queue_col_i64(r, i, 4);
    row->worker = hf_queue_col_text(p, r, i, 5, NULL);
    row->last_result = hf_queue_col_text(p, r, i, 6, NULL);
    row->output = hf_queue_col_text(p, r, i, 7, &len);
    if ((err = hf_queue_col_envelope(p, r, i, 8, &row->env))) {
        /* Shown all the same: the administrator wants to see it. */
        memset(&row->env, 0, sizeof row->env);
        row->env.type = apr_pstrcat(p, "(", err, ")", NULL);
        row->env.delivery_id = "?";
    }
    row->env.attempt = row->attempt;
    row->env.last_result = row->last_result;
}

const char *hf_queue_list(apr_pool_t *p, hf_queue_t *q, const char *state,
                          int limit, apr_array_header_t *rows)
{
    const char *v[2], *err;
    PGresult *r = NULL;
    int i;

    v[0] = state;
    v[1] = apr_itoa(p, limit > 0 ? limit : 1000);
    err = hf_queue_exec(p, q, "cannot list the queue's events",
                        state ? "SELECT " ROW_COLUMNS " FROM @N@_events "
                                "WHERE state = $1 ORDER BY id LIMIT $2::int4"
                              : "SELECT " ROW_COLUMNS " FROM @N@_events "
                                "WHERE state <> 'done' AND $1::text IS NULL "
                                "ORDER BY id LIMIT $2::int4",
                        2, v, &r);
    if (err)
        return err;
    for (i = 0; i < PQntuples(r); i++) {
        hf_queue_row_t *row = apr_palloc(p, sizeof *row);
        read_row(p, r, i, row);
        APR_ARRAY_PUSH(rows, hf_queue_row_t *) = row;
    }
    PQclear(r);
    return NULL;
}

const char *hf_queue_show(apr_pool_t *p, hf_queue_t *q, apr_int64_t id,
                          hf_queue_row_t *row, int *found)
{
    const char *v[1], *err;
    PGresult *r = NULL;

    v[0] = hf_queue_i64(p, id);
    *found = 0;
    err = hf_queue_exec(p, q, "cannot read the event",
                        "SELECT " ROW_COLUMNS " FROM @N@_events "
                        "WHERE id = $1::int8",
                        1, v, &r);
    if (err)
        return err;
    if (PQntuples(r) == 1) {
        read_row(p, r, 0, row);
        *found = 1;
    }
    PQclear(r);
    return NULL;
}

const char *hf_queue_requeue_id(apr_pool_t *p, hf_queue_t *q, apr_int64_t id,
                                apr_int64_t *new_id)
{
    const char *v[1], *err;
    PGresult *r = NULL;

    v[0] = hf_queue_i64(p, id);
    *new_id = 0;
    err = hf_queue_exec(p, q, "cannot requeue the event",
                        "SELECT @N@_requeue($1::int8)", 1, v, &r);
    if (err)
        return err;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        *new_id = hf_queue_col_i64(r, 0, 0);
    PQclear(r);
    return NULL;
}

const char *hf_queue_requeue(apr_pool_t *p, hf_queue_t *q, apr_int64_t id,
                             int *found)
{
    apr_int64_t new_id;
    const char *err = hf_queue_requeue_id(p, q, id, &new_id);

    *found = new_id != 0;
    return err;
}
