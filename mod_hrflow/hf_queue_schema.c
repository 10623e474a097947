/*
 * hf_queue_schema.c - the queue's tables and functions, and hrflowctl init
 * which creates or upgrades them.  @N@ stands for HrflowQueueName.
 *
 * The rules of hf_queue.h live here, in SQL, so that receivers and workers
 * of any version on any host keep the same ones:
 *
 * - @N@_accept: per order key (sorted, so that two groups never wait for
 *   each other in a cycle) a transaction-scoped advisory lock, then the
 *   inserts.  A row is head when no unfinished row of its key exists;
 *   under the lock that reading is exact, and the ids of a key follow
 *   commit order.  Each statement of a PL/pgSQL function takes a new
 *   snapshot (READ COMMITTED), so the reading after the lock sees what
 *   the previous holder committed.
 * - @N@_claim: the first due heads the worker may run, FOR UPDATE SKIP
 *   LOCKED, through the partial index on heads by program: it reads the
 *   heads it returns, and those before them that cannot run now (running
 *   elsewhere, a retry not yet due): never the backlog behind a head.
 * - @N@_finish: under the key's lock, the outcome only while the claim's
 *   token still holds, and the key's next row becomes head.
 * - @N@_requeue: a failed event back at the end of its key, under the lock.
 */
#include <string.h>
#include <apr_strings.h>
#include "hf_queue_pg.h"

/* Version 1: tables, indexes and the sequence of fencing tokens. */
static const char schema_v1[] =
    "CREATE TABLE @N@_schema (version int4 NOT NULL);\n"
    "CREATE SEQUENCE @N@_tokens;\n"
    "CREATE TABLE @N@_events (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  state text NOT NULL DEFAULT 'queued' CHECK (state IN\n"
    "    ('queued', 'retry', 'running', 'failed', 'done')),\n"
    "  head boolean NOT NULL DEFAULT false,\n"
    "  order_key text,\n"
    "  program text NOT NULL,\n"
    "  timeout int4 NOT NULL,\n"
    "  attempt int4 NOT NULL DEFAULT 0,\n"
    "  received timestamptz NOT NULL DEFAULT now(),\n"
    "  due timestamptz NOT NULL DEFAULT now(),\n"
    "  token int8,\n"
    "  worker text,\n"
    "  lease timestamptz,\n"
    "  finished timestamptz,\n"
    "  last_result text,\n"
    "  output bytea,\n"
    "  envelope bytea NOT NULL\n"
    ");\n"
    /* Only heads are ever claimed, at most one row per key with work; by
     * program, so that a worker reads only the heads it may run. */
    "CREATE INDEX @N@_events_heads ON @N@_events (program, id) WHERE head;\n"
    /* A key's unfinished rows: is there one (accept), which is next
     * (finish). */
    "CREATE INDEX @N@_events_keys ON @N@_events (order_key, id)\n"
    "  WHERE state IN ('queued', 'retry', 'running');\n"
    /* hrflowctl list, counts, the purge of done rows. */
    "CREATE INDEX @N@_events_states ON @N@_events (state, id);\n";

/* A number of C in the SQL text. */
#define HF_QUEUE_STR_(x) #x
#define HF_QUEUE_STR(x) HF_QUEUE_STR_(x)

/* The functions act as the schema's owner, on the tables init made (the
 * search path of init's session), so that a receiver's role may be given
 * only EXECUTE on @N@_accept, and a worker's only on the claim and the
 * outcomes (README: Roles and TLS). */
/* And each statement in them is planned for its values: a plan cached
 * while the table was small (a seq scan) would stay in a long-lived
 * session and read the whole table for every event of a new key. */
#define DEFINER "SECURITY DEFINER SET search_path FROM CURRENT " \
    "SET plan_cache_mode = force_custom_plan "

/* Functions: replaced by every init, so an upgrade brings the new ones. */
static const char functions[] =
    "CREATE OR REPLACE FUNCTION @N@_lock(k text) RETURNS void\n"
    "LANGUAGE sql VOLATILE " DEFINER "AS $$\n"
    "  SELECT pg_advisory_xact_lock(hashtextextended('@N@:' || k, 0))\n"
    "$$;\n"
    "CREATE OR REPLACE FUNCTION @N@_accept(envs bytea[], keys text[],\n"
    "    programs text[], timeouts int4[], received int8[])\n"
    "RETURNS void LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "DECLARE\n"
    "  k text;\n"
    "BEGIN\n"
    "  FOR k IN SELECT DISTINCT x FROM unnest(keys) AS x\n"
    "           WHERE x IS NOT NULL ORDER BY 1 LOOP\n"
    "    PERFORM @N@_lock(k);\n"
    "  END LOOP;\n"
    "  FOR i IN 1 .. coalesce(array_length(envs, 1), 0) LOOP\n"
    "    INSERT INTO @N@_events (order_key, program, timeout, received,\n"
    "                            envelope, head)\n"
    "    VALUES (keys[i], programs[i], timeouts[i],\n"
    "            to_timestamp(received[i] / 1000000.0), envs[i],\n"
    "            keys[i] IS NULL OR NOT EXISTS (SELECT 1 FROM @N@_events\n"
    "              WHERE order_key = keys[i]\n"
    "              AND state IN ('queued', 'retry', 'running')));\n"
    "  END LOOP;\n"
    "  PERFORM pg_notify('@N@', '');\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @N@_claim(p_worker text, p_programs text[],\n"
    "    p_max int4, p_extra int4)\n"
    "RETURNS TABLE (o_id int8, o_token int8, o_attempt int4,\n"
    "               o_envelope bytea, o_last_result text, o_timeout int4)\n"
    "LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "BEGIN\n"
    "  RETURN QUERY\n"
    "  UPDATE @N@_events e SET state = 'running', attempt = e.attempt + 1,\n"
    "    token = nextval('@N@_tokens'), worker = p_worker,\n"
    /* The handler's timeout as the worker clamps it (1 ..
     * HF_MAX_TIMEOUT), so that the lease matches it; a row's absurd
     * timeout never overflows int4 and fails every claim. */
    "    lease = now() + make_interval(secs => least(greatest(e.timeout,\n"
    "      1), " HF_QUEUE_STR(HF_MAX_TIMEOUT) ") + p_extra)\n"
    /* Per program the first due heads, in id order down the index; of
     * those, the first p_max.  (One ordered scan per program: an index
     * scan cannot give the heads of several programs in id order.) */
    "  WHERE e.id IN (SELECT h.id FROM unnest(p_programs) AS prog(name),\n"
    "    LATERAL (SELECT c.id FROM @N@_events c\n"
    "      WHERE c.head AND c.program = prog.name\n"
    "      AND CASE c.state WHEN 'running' THEN c.lease < now()\n"
    "                       ELSE c.due <= now() END\n"
    "      ORDER BY c.id LIMIT p_max FOR UPDATE SKIP LOCKED) AS h\n"
    "    ORDER BY h.id LIMIT p_max)\n"
    "  RETURNING e.id, e.token, e.attempt, e.envelope, e.last_result,\n"
    "    e.timeout;\n"
    "END $$;\n"
    /* The key's next event may run now: workers hear of it at once. */
    "CREATE OR REPLACE FUNCTION @N@_next_head(k text) RETURNS void\n"
    "LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "BEGIN\n"
    "  UPDATE @N@_events SET head = true WHERE id = (SELECT min(id)\n"
    "    FROM @N@_events WHERE order_key = k\n"
    "    AND state IN ('queued', 'retry', 'running'));\n"
    "  IF FOUND THEN\n"
    "    PERFORM pg_notify('@N@', '');\n"
    "  END IF;\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @N@_finish(p_id int8, p_token int8,\n"
    "    p_state text, p_result text, p_output bytea)\n"
    "RETURNS boolean LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "DECLARE\n"
    "  k text;\n"
    "BEGIN\n"
    "  SELECT order_key INTO k FROM @N@_events WHERE id = p_id;\n"
    "  IF k IS NOT NULL THEN\n"
    "    PERFORM @N@_lock(k);\n"
    "  END IF;\n"
    "  UPDATE @N@_events SET state = p_state, head = false, lease = NULL,\n"
    "    finished = now(), last_result = p_result, output = p_output\n"
    "  WHERE id = p_id AND token = p_token AND state = 'running';\n"
    "  IF NOT FOUND THEN\n"
    "    RETURN false;\n"
    "  END IF;\n"
    "  IF k IS NOT NULL THEN\n"
    "    PERFORM @N@_next_head(k);\n"
    "  END IF;\n"
    "  RETURN true;\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @N@_requeue(p_id int8) RETURNS int8\n"
    "LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "DECLARE\n"
    "  k text;\n"
    "  moved int8;\n"
    "BEGIN\n"
    "  SELECT order_key INTO k FROM @N@_events\n"
    "  WHERE id = p_id AND state = 'failed';\n"
    "  IF NOT FOUND THEN\n"
    "    RETURN NULL;\n"
    "  END IF;\n"
    "  IF k IS NOT NULL THEN\n"
    "    PERFORM @N@_lock(k);\n"
    "  END IF;\n"
    /* A new id: behind everything its key has now. */
    "  UPDATE @N@_events SET id = nextval('@N@_events_id_seq'),\n"
    "    state = 'queued', attempt = 0, due = now(), token = NULL,\n"
    "    worker = NULL, lease = NULL, finished = NULL, last_result = NULL,\n"
    "    output = NULL,\n"
    "    head = k IS NULL OR NOT EXISTS (SELECT 1 FROM @N@_events\n"
    "      WHERE order_key = k AND state IN ('queued', 'retry', 'running'))\n"
    "  WHERE id = p_id AND state = 'failed' RETURNING id INTO moved;\n"
    "  IF moved IS NOT NULL THEN\n"
    "    PERFORM pg_notify('@N@', '');\n"
    "  END IF;\n"
    "  RETURN moved;\n"
    "END $$;\n"
    /* A retry stays its key's head: it holds back only its key. */
    /* The wait is counted from the database's clock, as every other
     * time of the queue: workers' clocks may differ. */
    "CREATE OR REPLACE FUNCTION @N@_retry(p_id int8, p_token int8,\n"
    "    p_delay int8, p_result text)\n"
    "RETURNS boolean LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "BEGIN\n"
    "  UPDATE @N@_events SET state = 'retry', lease = NULL,\n"
    "    due = now() + make_interval(secs => greatest(p_delay, 0) "
    "/ 1000000.0),\n"
    "    last_result = p_result\n"
    "  WHERE id = p_id AND token = p_token AND state = 'running';\n"
    "  RETURN FOUND;\n"
    "END $$;\n"
    /* A try cut short by the worker's stop (a graceful restart): the
     * claim ends now, not when its lease would, so another worker (or the
     * next one) runs it again at once; the try counts. */
    "CREATE OR REPLACE FUNCTION @N@_release(p_id int8, p_token int8)\n"
    "RETURNS boolean LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "BEGIN\n"
    "  UPDATE @N@_events SET lease = now()\n"
    "  WHERE id = p_id AND token = p_token AND state = 'running';\n"
    "  IF FOUND THEN\n"
    "    PERFORM pg_notify('@N@', '');\n"
    "  END IF;\n"
    "  RETURN FOUND;\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @N@_purge(p_keep int4) RETURNS int8\n"
    "LANGUAGE plpgsql VOLATILE " DEFINER "AS $$\n"
    "DECLARE\n"
    "  n int8;\n"
    "BEGIN\n"
    "  DELETE FROM @N@_events WHERE id IN (SELECT id FROM @N@_events\n"
    "    WHERE state = 'done'\n"
    "    AND finished < now() - make_interval(secs => p_keep)\n"
    "    ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED);\n"
    "  GET DIAGNOSTICS n = ROW_COUNT;\n"
    "  RETURN n;\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @N@_counts()\n"
    "RETURNS TABLE (o_state text, o_count int8)\n"
    "LANGUAGE sql STABLE " DEFINER "AS $$\n"
    "  SELECT state, count(*) FROM @N@_events GROUP BY state\n"
    "$$;\n"
    /* Nobody but the owner, until granted (README). */
    "REVOKE ALL ON FUNCTION @N@_lock(text), @N@_next_head(text),\n"
    "  @N@_accept(bytea[], text[], text[], int4[], int8[]),\n"
    "  @N@_claim(text, text[], int4, int4),\n"
    "  @N@_finish(int8, int8, text, text, bytea),\n"
    "  @N@_retry(int8, int8, int8, text), @N@_release(int8, int8),\n"
    "  @N@_requeue(int8),\n"
    "  @N@_purge(int4), @N@_counts() FROM PUBLIC;\n";

/* Runs a script of several statements (the simple protocol). */
static const char *run_script(apr_pool_t *p, hf_queue_t *q, const char *what,
                              const char *sql)
{
    PGresult *r = PQexec(q->conn, hf_queue_sql(p, q, sql));
    const char *err = NULL;
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        err = hf_queue_reason(p, q, what,
                              r ? PQresultErrorMessage(r)
                                : PQerrorMessage(q->conn));
    PQclear(r);
    return err;
}

static const char *init_in_transaction(apr_pool_t *p, hf_queue_t *q,
                                       int *from)
{
    const char *err;

    /* Two inits at once: the second waits and finds the work done. */
    if ((err = run_script(p, q, "cannot lock the queue's schema",
                          "SELECT pg_advisory_xact_lock("
                          "hashtextextended('@N@ schema', 0))")))
        return err;
    if ((err = hf_queue_read_version(p, q, from)))
        return err;
    if (*from > HF_QUEUE_SCHEMA_VERSION)
        return apr_psprintf(p, "the queue's schema %s is at version %d, "
                            "newer than this program's %d: upgrade "
                            "mod_hrflow", q->spec.name, *from,
                            HF_QUEUE_SCHEMA_VERSION);
    if (*from < 1
        && (err = run_script(p, q, "cannot create the queue's tables",
                             schema_v1)))
        return err;
    /* Later versions: their upgrades from *from follow here. */
    if ((err = run_script(p, q, "cannot create the queue's functions",
                          functions)))
        return err;
    return run_script(p, q, "cannot record the schema's version",
                      apr_psprintf(p, "DELETE FROM @N@_schema; "
                                      "INSERT INTO @N@_schema VALUES (%d)",
                                   HF_QUEUE_SCHEMA_VERSION));
}

const char *hf_queue_init(apr_pool_t *p, hf_queue_t *q, int *from)
{
    const char *err;

    *from = 0;
    if (!hf_queue_ok(q))
        return "cannot create the queue's schema: not connected";
    if ((err = run_script(p, q, "cannot begin", "BEGIN")))
        return err;
    if ((err = init_in_transaction(p, q, from))) {
        PGresult *r = PQexec(q->conn, "ROLLBACK");
        PQclear(r);
        return err;
    }
    if ((err = run_script(p, q, "cannot commit the queue's schema",
                          "COMMIT")))
        return err;
    q->schema = HF_QUEUE_SCHEMA_VERSION;
    return NULL;
}
