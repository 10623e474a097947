"""The queue layer's rules in a real PostgreSQL (SPEC 8, hf_queue.h): the
schema's functions as every receiver and worker calls them, hrflowctl init
and what it says, a worker waiting for the schema.  The fleet tests
(test_fleet*.py) drive the same rules through Apache and workers."""
import re
import time

import pytest

from conftest import wait_until
from pgfixture import (Postgres, RUNNING, Worker, stop_postgres,
                       worker_built)


@pytest.fixture(scope="module")
def pg(scratch):
    """A server with the role and database, and no schema yet."""
    server = Postgres(scratch, "layer")
    server.init()
    RUNNING.add(server)
    try:
        server.start()
        server.create_role()
        yield server
    finally:
        stop_postgres(server)


def ctl(pg, *args):
    return pg.hrflowctl(*args)


def test_init_creates_then_finds_the_schema(pg):
    r = ctl(pg, "list", pg.url)
    assert r.returncode == 1
    assert "the queue's schema (hrflow_events) is missing: run hrflowctl " \
           "init URL" in r.stderr, r.stderr
    r = ctl(pg, "init", pg.url)
    assert r.returncode == 0, r.stderr
    assert "created the queue hrflow (version 1)" in r.stdout
    r = ctl(pg, "init", pg.url)
    assert r.returncode == 0, r.stderr
    assert "the queue hrflow is at version 1 already" in r.stdout
    r = ctl(pg, "list", pg.url)
    assert r.returncode == 0, r.stderr
    assert "queued: 0" in r.stdout and "failed: 0" in r.stdout


def test_a_newer_schema_is_refused_not_downgraded(pg):
    ctl(pg, "init", pg.url)
    pg.sql("UPDATE hrflow_schema SET version = 99")
    try:
        for cmd in ("list", "init"):
            r = ctl(pg, cmd, pg.url)
            assert r.returncode == 1
            assert "at version 99, newer than this program's 1: upgrade " \
                   "mod_hrflow" in r.stderr, r.stderr
    finally:
        pg.sql("UPDATE hrflow_schema SET version = 1")


def test_the_password_is_in_no_message(pg):
    wrong = "Wr0ngPassw0rd"
    url = pg.url.replace("hrflow@", f"hrflow:{wrong}@")
    r = ctl(pg, "list", url)
    assert r.returncode == 1
    assert "password authentication failed" in r.stderr, r.stderr
    r = ctl(pg, "list", url.replace("127.0.0.1", "[127.0.0.1"))
    assert r.returncode == 1 and "cannot connect" in r.stderr, r.stderr
    assert wrong not in r.stderr and "***" in r.stderr, r.stderr


# ---- the rules, through the functions receivers and workers call ----------

def accept(pg, *keys, program="/bin/true"):
    """One commit group; the ids it created, in order."""
    before = int(pg.sql("SELECT coalesce(max(id), 0) FROM hrflow_events"))
    arr = ",".join("NULL" if k is None else f"'{k}'" for k in keys)
    n = len(keys)
    pg.sql(f"SELECT hrflow_accept(array_fill('x'::bytea, ARRAY[{n}]), "
           f"ARRAY[{arr}]::text[], array_fill('{program}'::text, "
           f"ARRAY[{n}]), array_fill(30, ARRAY[{n}]), "
           f"array_fill(0::int8, ARRAY[{n}]))")
    return [int(x) for x in pg.sql(
        f"SELECT id FROM hrflow_events WHERE id > {before} "
        "ORDER BY id").split()]


def claim(pg, programs="/bin/true", n=10, worker="w"):
    """{id: (token, attempt)} of one claim."""
    out = pg.sql(f"SELECT o_id, o_token, o_attempt FROM hrflow_claim("
                 f"'{worker}', '{{{programs}}}', {n}, 8)")
    return {int(i): (int(t), int(a)) for i, t, a in
            (row.split("|") for row in out.split())}


def finish(pg, id_, token, state="done"):
    return pg.sql(f"SELECT hrflow_finish({id_}, {token}, '{state}', "
                  "NULL, NULL)").strip() == "t"


def heads(pg):
    return [int(x) for x in pg.sql(
        "SELECT id FROM hrflow_events WHERE head ORDER BY id").split()]


@pytest.fixture
def queue(pg):
    ctl(pg, "init", pg.url)
    pg.sql("DELETE FROM hrflow_events")
    return pg


def test_one_head_per_key_and_no_key_always_head(queue):
    a1, b1, a2, none, a3 = accept(queue, "p:a", "p:b", "p:a", None, "p:a")
    assert heads(queue) == [a1, b1, none]
    got = claim(queue)
    assert sorted(got) == [a1, b1, none]
    assert claim(queue) == {}                  # running heads stay taken
    assert finish(queue, a1, got[a1][0])
    assert heads(queue) == [b1, a2, none]      # the key's next, in order
    assert list(claim(queue)) == [a2]


def test_a_claim_never_looks_past_a_program_it_does_not_run(queue):
    mine, = accept(queue, "p:x", program="/bin/true")
    accept(queue, "p:y", program="/usr/bin/other")
    assert list(claim(queue, programs="/bin/true")) == [mine]
    assert claim(queue, programs="/bin/true") == {}


def test_a_late_result_is_fenced(queue):
    first, second = accept(queue, "p:f", "p:f")
    (token1, attempt1), = claim(queue).values()
    assert attempt1 == 1
    # The lease passes (a worker frozen or cut off): claimed again.
    queue.sql(f"UPDATE hrflow_events SET lease = now() - interval '1 s' "
              f"WHERE id = {first}")
    got = claim(queue, worker="w2")
    assert list(got) == [first]
    token2, attempt2 = got[first]
    assert token2 > token1 and attempt2 == 2
    assert not finish(queue, first, token1)    # the late one changes nothing
    assert queue.sql(f"SELECT state FROM hrflow_events WHERE id = {first}"
                     ).strip() == "running"
    assert heads(queue) == [first]
    assert finish(queue, first, token2)
    assert heads(queue) == [second]


def test_a_retry_holds_its_key_until_due(queue):
    first, second = accept(queue, "p:r", "p:r")
    (token, _), = claim(queue).values()
    queue.sql(f"UPDATE hrflow_events SET state = 'retry', lease = NULL, "
              f"due = now() + interval '1 h' WHERE id = {first} "
              f"AND token = {token}")
    assert claim(queue) == {}                  # neither it nor its key
    queue.sql(f"UPDATE hrflow_events SET due = now() WHERE id = {first}")
    assert list(claim(queue)) == [first]


def test_a_retry_is_due_by_the_database_clock(queue):
    """hrflow_retry takes a delay, counted from the database's now():
    workers on hosts whose clocks differ retry after the same wait."""
    first, = accept(queue, "p:clock")
    (token, _), = claim(queue).values()
    assert queue.sql(f"SELECT hrflow_retry({first}, {token}, 3000000, "
                     "'exit 1')").strip() == "t"
    left = float(queue.sql("SELECT extract(epoch FROM due - now()) FROM "
                           f"hrflow_events WHERE id = {first}"))
    assert 2.0 < left <= 3.0, left


def test_requeue_goes_behind_its_key(queue):
    first, second = accept(queue, "p:q", "p:q")
    (token, _), = claim(queue).values()
    assert finish(queue, first, token, "failed")
    assert heads(queue) == [second]            # failed: the key goes on
    r = ctl(queue, "requeue", queue.url, str(first))
    assert r.returncode == 0, r.stderr
    moved = int(re.search(r"requeued \d+ as (\d+)", r.stdout)[1])
    assert moved > second
    assert heads(queue) == [second]            # behind the unfinished one
    (token2, _), = claim(queue).values()
    assert finish(queue, second, token2)
    assert heads(queue) == [moved]
    r = ctl(queue, "requeue", queue.url, str(first))
    assert r.returncode == 1 and "no failed event" in r.stderr


def test_commits_of_one_key_wait_for_each_other(queue):
    """The trap of ids assigned at insert and rows seen at commit: while
    one group of key K is not committed, another waits for it, and finds
    it: never two heads."""
    s = queue.psql_session()
    try:
        s.stdin.write("BEGIN;\nSELECT hrflow_accept(ARRAY['x'::bytea], "
                      "ARRAY['p:t'], ARRAY['/bin/true'], ARRAY[30], "
                      "ARRAY[0::int8]);\nSELECT 'held';\n")
        s.stdin.flush()
        assert s.stdout.readline().strip() == ""   # hrflow_accept's row
        assert s.stdout.readline().strip() == "held"
        import threading
        done = []
        t = threading.Thread(target=lambda: done.append(accept(queue,
                                                               "p:t")))
        t.start()
        time.sleep(1)
        assert not done, "the second commit of the key waited"
        s.stdin.write("COMMIT;\n")
        s.stdin.flush()
        t.join(30)
        assert done
    finally:
        s.stdin.close()
        s.wait(10)
    assert len(heads(queue)) == 1


# ---- a worker and the schema ----------------------------------------------

@pytest.mark.expect_log(r"HF00702: queue later: the queue's schema "
                        r"\(later_events\) is missing: run hrflowctl init")
def test_a_worker_waits_for_the_schema(pg, scratch):
    worker_built()
    w = Worker(scratch, "schema-wait", pg, ["* /bin/true"],
               extra="HrflowQueueName later\n").start()
    try:
        assert wait_until(lambda: "HF00702" in w.log(), timeout=20), w.log()
        r = ctl(pg, "--name", "later", "init", pg.url)
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: "HF00703: queue later: connected again"
                          in w.log(), timeout=60), w.log()
    finally:
        w.stop()
    assert "HF00712" in w.log()


def test_a_new_key_never_reads_the_whole_table(queue):
    """A receiver's session lives long: a plan that PL/pgSQL cached while
    the table was small (a sequential scan) must not be used once it has
    grown, or every event of a new key reads the whole table."""
    queue.sql("ALTER TABLE hrflow_events SET (autovacuum_enabled = false)")
    queue.sql("TRUNCATE hrflow_events")        # small, and known to be
    queue.sql("ANALYZE hrflow_events")
    one = ("SELECT hrflow_accept(ARRAY['x'::bytea], ARRAY['{k}'], "
           "ARRAY['/bin/true'], ARRAY[30], ARRAY[0::int8]);")
    scans = ("SELECT seq_scan FROM pg_stat_xact_user_tables "
             "WHERE relname = 'hrflow_events';")
    try:
        out = queue.sql(
            "".join(one.format(k=f"p:small{i}") for i in range(8))
            + "INSERT INTO hrflow_events (state, order_key, program, timeout,"
              " envelope) SELECT 'done', 'p:old' || i, '/bin/true', 30, 'x'"
              " FROM generate_series(1, 20000) AS i;"
            + scans + one.format(k="p:new") + scans)
        before, after = [int(x) for x in out.split()]
        assert after == before, "the new key's event read the table"
    finally:
        queue.sql("ALTER TABLE hrflow_events RESET (autovacuum_enabled)")
