"""Fleet mode: failures the other fleet tests leave out.

- a COMMIT that waits for a synchronous standby that is gone: 503 within
  HrflowQueueTimeout, not a request that hangs (statement_timeout does
  not cover the commit) nor a 202 committed on the primary only;
- a database that turns read-only: hrflow-health says 503, and a worker
  says so once and backs off;
- one program with two argument lists among a worker's HrflowHandler
  lines: each event runs with its own;
- an order key longer than an index entry holds."""
import json
import os
import secrets
import time

import pytest

from conftest import Httpd, wait_until
from pgfixture import fleet, fleet_module      # noqa: F401 (fixtures)
from pgfixture import receiver_config
from test_fleet import spans

JSON = {"Content-Type": "application/json"}


def post(server, path, events):
    body = json.dumps(events).encode()
    r, data = server.request("POST", path, body, JSON)
    return r.status, data


def set_standby(pg, names):
    pg.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
    pg.sql("SELECT pg_reload_conf()")
    time.sleep(0.5)


@pytest.mark.expect_log(r"HF00803: .*synchronous standby")
def test_commit_not_replicated_is_503(fleet):
    """synchronous_standby_names names a standby that is not there: every
    COMMIT waits for it, past the statement (statement_timeout ends with
    the statement).  The receiver answers 503 queue_unavailable once
    HrflowQueueTimeout (2 s here) has passed; before, the request hung
    for as long as the standby stayed away."""
    set_standby(fleet.pg, "nosuch")
    try:
        status, data = post(fleet.a, "/count",
                            [{"type": "profile.parsing.success",
                              "profile": {"key": "sync-1"}}])
    finally:
        set_standby(fleet.pg, "")
    assert status == 503, (status, data)
    assert json.loads(data)["error"] == "queue_unavailable"


@pytest.fixture
def health_receiver(fleet, scratch):
    """A third receiver of the fleet's queue, with SetHandler
    hrflow-health at /health."""
    server = Httpd("fleet-review-health", scratch)
    server.write_config(receiver_config(scratch, fleet.pg, fleet.out)
                        + "<Location /health>\n"
                          "    SetHandler hrflow-health\n</Location>\n")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def set_read_only(pg, on):
    pg.sql("ALTER SYSTEM SET default_transaction_read_only = "
           + ("on" if on else "off"))
    pg.sql("SELECT pg_reload_conf()")
    time.sleep(0.5)


@pytest.mark.expect_log(r"HF0080[23]: .*read-only")
def test_health_503_when_the_database_is_read_only(fleet, health_receiver):
    """The database turns read-only (a standby, or
    default_transaction_read_only for maintenance): reads still work, every
    commit fails.  hrflow-health must not tell the load balancer 200 while
    every event gets 503."""
    server = health_receiver
    r, data = server.request("GET", "/health")
    assert r.status == 200, data
    set_read_only(fleet.pg, True)
    try:
        status, data = post(server, "/count",
                            [{"type": "profile.parsing.success",
                              "profile": {"key": "ro-1"}}])
        assert status == 503, (status, data)
        time.sleep(2.5)          # past the health check's cache
        r, health = server.request("GET", "/health")
    finally:
        set_read_only(fleet.pg, False)
    assert r.status == 503, health
    assert json.loads(health)["error"] == "queue_unavailable"


def test_one_program_two_argument_lists(fleet):
    """/fleet runs `fleet.sh OUT 0.3`, /slow `fleet.sh OUT 1.5`: one
    program, two argument lists, both among the worker's HrflowHandler
    lines (as HrflowWorker on collects every endpoint's).  An event of
    /slow runs with /slow's arguments, as the spool dispatcher runs it,
    not with the first line the worker has for that program."""
    fleet.worker("review-args", paths=["/fleet", "/slow"])
    status, _ = post(fleet.a, "/slow", [{"type": "profile.parsing.success",
                                         "message": "slow",
                                         "profile": {"key": "args-1"}}])
    assert status == 202
    assert wait_until(lambda: any("end" in s for s in
                                  spans(fleet.out).values()), timeout=30)
    (run,) = spans(fleet.out).values()
    assert run["end"] - run["start"] >= 1.4, run


@pytest.mark.expect_log(r"HF00702: .*read-only")
def test_worker_on_a_read_only_database(fleet):
    """A worker whose database turns read-only (a standby, or
    default_transaction_read_only) fails every claim: it says so once and
    backs off, as for a lost database, rather than one error line per
    second; and it claims again once the database takes writes."""
    status, _ = post(fleet.a, "/fleet", [{"type": "profile.parsing.success",
                                          "message": "ro",
                                          "profile": {"key": "ro-w"}}])
    assert status == 202
    set_read_only(fleet.pg, True)
    try:
        w = fleet.worker("review-ro", paths=["/fleet"])
        time.sleep(5)
        errors = [line for line in w.log().splitlines()
                  if "read-only" in line]
    finally:
        set_read_only(fleet.pg, False)
    assert len(errors) == 1, errors
    assert wait_until(lambda: any("end" in s for s in
                                  spans(fleet.out).values()), timeout=60)


def test_long_order_key_is_accepted_and_runs(fleet):
    """A profile key of 8 kB (the sender chooses it; nothing bounds it but
    the body's size) is accepted and runs in order as any other: it must
    not make the commit fail (a btree index entry holds at most about
    2.7 kB), which would answer 503 for it forever, and for every request
    that shares its commit group."""
    key = secrets.token_urlsafe(6000)
    fleet.worker("review-key", paths=["/fleet"])
    for message in ("k1", "k2"):
        status, data = post(fleet.a, "/fleet",
                            [{"type": "profile.parsing.success",
                              "message": message, "profile": {"key": key}}])
        assert status == 202, data
    assert wait_until(lambda: sum("end" in s for s in
                                  spans(fleet.out).values()) == 2,
                      timeout=30)
    runs = sorted(spans(fleet.out).values(), key=lambda s: s["start"])
    assert [r["message"] for r in runs] == ["k1", "k2"]
    assert runs[0]["end"] <= runs[1]["start"]


@pytest.mark.expect_log(r"HF00715: .*gone\.sh", r"HF00716: .*gone\.sh")
def test_missing_program_is_not_claimed(fleet, scratch):
    """A worker whose handler program was removed after it started (a
    deploy under way on its host) must not claim that program's events
    and spend their tries failing to start it: they wait, queued, for a
    worker that has it, and run once the program is back."""
    import shutil
    from pgfixture import Worker
    h = f"{scratch}/handlers"
    gone = f"{h}/gone.sh"
    shutil.copy(f"{h}/fleet.sh", gone)
    os.chmod(gone, 0o755)
    line = f"* {gone} {fleet.out} 0.1"
    server = Httpd("fleet-review-gone", scratch)
    server.write_config(
        receiver_config(scratch, fleet.pg, fleet.out)
        + "<Location /gone>\n    SetHandler hrflow-webhook\n"
          f"    HrflowSignature optional\n    HrflowHandler {line}\n"
          "</Location>\n")
    server.start()
    w = Worker(scratch, "review-gone", fleet.pg, [line], retry=1)
    fleet.workers.append(w)
    try:
        w.start()
        assert wait_until(lambda: "HF00701" in w.log(), timeout=20)
        os.rename(gone, gone + ".away")
        status, _ = post(server, "/gone", [{"type": "profile.parsing.success",
                                            "message": "gone",
                                            "profile": {"key": "gone-1"}}])
        assert status == 202
        time.sleep(4)            # a few claims, and a retry's delay
        rows = fleet.pg.sql(f"SELECT state, attempt FROM {fleet.pg.table()}")
        assert rows.split() == ["queued|0"], rows
        os.rename(gone + ".away", gone)
        assert wait_until(lambda: any("end" in s for s in
                                      spans(fleet.out).values()),
                          timeout=30)
        (run,) = spans(fleet.out).values()
        assert run["attempt"] == 1
    finally:
        server.stop()
        if os.path.exists(gone + ".away"):
            os.rename(gone + ".away", gone)


@pytest.mark.expect_log(r"result=timeout")
def test_handler_gets_the_timeout_its_lease_was_given_for(fleet):
    """The lease lasts the row's timeout (and the kill grace): the handler
    must be stopped by that same timeout, not by the one its envelope
    names, or whoever can write rows could let a lease pass while the
    handler still runs, and the event run twice at once.  /slow's handler
    sleeps 1.5 s under HrflowTimeout 5; its row says 1 s."""
    status, _ = post(fleet.a, "/slow", [{"type": "profile.parsing.success",
                                         "message": "short-lease",
                                         "profile": {"key": "lease-1"}}])
    assert status == 202
    table = f"{fleet.pg.name}_events"
    fleet.pg.sql(f"UPDATE {table} SET timeout = 1 WHERE state = 'queued'")
    fleet.worker("review-lease", paths=["/slow"])

    def first_result():
        rows = fleet.pg.sql(f"SELECT state, last_result FROM {table} "
                            "WHERE attempt >= 1 AND state <> 'running'")
        return rows.strip()
    seen = wait_until(first_result, timeout=30)
    assert seen and "timeout" in seen, seen
