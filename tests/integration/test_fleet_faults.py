"""Fleet mode's failures (SPEC section 8): a worker killed or frozen
mid-handler, PostgreSQL stopped or killed mid-burst, the database down
under store-and-forward.  Every 202 runs; a late result is fenced.
These tests run once in scripts/test.sh (not under every MPM)."""
import os
import signal
import time

import pytest

from conftest import Burst, gone, lines, wait_until
from pgfixture import fleet, fleet_module      # noqa: F401 (fixtures)
from test_fleet import event, fleet_runs, post

# What the receivers (HF008xx) and the workers (HF007xx) log while the
# database is away, and the requests refused meanwhile.
DB_DOWN = (r"\[hrflow:(error|warn)\] .*HF008\d\d: queue ",
           r"^hrflow-worker\[\d+\]: \[(error|warn)\] HF007\d\d: queue ")


def ran(out):
    """count.sh's log: delivery id -> runs, and the keys that ran."""
    runs, keys = {}, set()
    for line in lines(os.path.join(out, "ran.log")):
        delivery, _, key = line.split()
        runs[delivery] = runs.get(delivery, 0) + 1
        keys.add(key)
    return runs, keys


def fleet_burst(receivers):
    """Six threads posting unique events to /count on the receivers in
    turn until stopped; a refused one (a 503 while the database is away)
    is followed by a pause, as HrFlow's retries are."""
    def send(key, n):
        status, _ = post(receivers[n % len(receivers)], "/count",
                         [event(key)])
        return status
    return Burst(send, 6, pause=lambda status: status != 202)


def check_every_202_ran(fleet, burst, timeout=60):
    accepted = burst.accepted()
    statuses = set(burst.answers.values())
    assert statuses <= {202, 503}, statuses
    assert len(accepted) > 20
    assert wait_until(lambda: accepted <= ran(fleet.out)[1],
                      timeout=timeout), sorted(accepted - ran(fleet.out)[1])[:5]
    time.sleep(1)
    runs, keys = ran(fleet.out)
    refused = {k for k, s in burst.answers.items() if s != 202}
    # A 503 whose commit reached the disk before the database went away
    # may still run: at least once.  Nothing else does.
    assert keys - accepted <= refused
    duplicates = sum(n - 1 for n in runs.values())
    print(f"202 answers {len(accepted)}, 503 answers {len(refused)}, "
          f"ran {len(runs)}, duplicates {duplicates}")
    return duplicates


# ---- workers that die or freeze mid-handler --------------------------------

def test_worker_killed_mid_handler_runs_again_elsewhere(fleet):
    a = fleet.worker("a")
    status, _ = post(fleet.a, "/crash", [event("k-crash")])
    assert status == 202
    first = wait_until(lambda: [r for r in fleet_runs(fleet.out)
                                if r["what"] == "start"])
    assert first[0]["attempt"] == 1 and first[0]["worker"] == a.pid
    handler = first[0]["pid"]
    a.kill()
    b = fleet.worker("b")
    # The dead worker's handler does not keep running.
    assert wait_until(lambda: gone(handler), timeout=5), \
        f"handler {handler} of the killed worker still runs"
    second = wait_until(lambda: [r for r in fleet_runs(fleet.out)
                                 if r["attempt"] == 2 and r["what"] == "end"],
                        timeout=30)
    assert second, fleet.pg.hrflowctl("list", fleet.pg.url).stdout + b.log()
    assert second[0]["worker"] == b.pid
    assert second[0]["delivery"] == first[0]["delivery"]
    time.sleep(1)
    runs = fleet_runs(fleet.out)
    assert [(r["what"], r["attempt"]) for r in runs] == \
        [("start", 1), ("start", 2), ("end", 2)]


# The frozen worker may find its handler's time over when it wakes.
@pytest.mark.expect_log(r"handler=\S*/freeze\.sh result=timeout")
def test_frozen_worker_late_result_is_fenced(fleet):
    """Worker a freezes while its handler runs (1 s); past the lease, b
    claims the event and runs it (1.5 s).  a wakes while b's claim holds
    the event: a's result is discarded, b's is the one recorded."""
    a = fleet.worker("a")
    status, _ = post(fleet.a, "/freeze", [event("k-freeze")])
    assert status == 202
    first = wait_until(lambda: [r for r in fleet_runs(fleet.out)
                                if r["what"] == "start"])
    assert first[0]["worker"] == a.pid
    os.kill(a.pid, signal.SIGSTOP)
    try:
        b = fleet.worker("b")
        second = wait_until(
            lambda: [r for r in fleet_runs(fleet.out)
                     if r["attempt"] == 2 and r["what"] == "start"],
            timeout=30)
        assert second and second[0]["worker"] == b.pid
        # The first try finished while its worker was frozen.
        assert [r for r in fleet_runs(fleet.out)
                if r["attempt"] == 1 and r["what"] == "end"]
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert wait_until(lambda: "late result discarded" in a.log(),
                      timeout=15), a.log()
    assert wait_until(lambda: [r for r in fleet_runs(fleet.out)
                               if r["attempt"] == 2 and r["what"] == "end"])
    time.sleep(1.5)
    assert "late result discarded" not in b.log(), b.log()
    runs = fleet_runs(fleet.out)
    assert sorted(r["attempt"] for r in runs if r["what"] == "end") == [1, 2]
    listing = fleet.pg.hrflowctl("list", fleet.pg.url).stdout
    assert "failed: 0" in listing and "running: 0" in listing, listing
    assert "done (kept a while): 1" in listing, listing


# ---- the database goes away mid-burst --------------------------------------

@pytest.mark.expect_log(*DB_DOWN)
def test_postgres_stopped_immediately_mid_burst(fleet):
    fleet.worker("a")
    fleet.worker("b")
    try:
        with fleet_burst([fleet.a, fleet.b]) as burst:
            time.sleep(1.5)
            fleet.pg.stop("immediate")
            time.sleep(3)       # longer than HrflowQueueTimeout: 503s
        assert 503 in burst.answers.values()
    finally:
        fleet.pg.restart()
    check_every_202_ran(fleet, burst)


@pytest.mark.expect_log(*DB_DOWN)
def test_postmaster_killed_mid_burst_then_restarted(fleet):
    fleet.worker("a")
    fleet.worker("b")
    try:
        with fleet_burst([fleet.a, fleet.b]) as burst:
            time.sleep(1.5)
            fleet.pg.kill9()
            time.sleep(1)
            fleet.pg.restart()
            time.sleep(1.5)
    finally:
        if not fleet.pg.pid():
            fleet.pg.restart()
    check_every_202_ran(fleet, burst)
    assert "was interrupted" in fleet.pg.server_log() or \
        "not properly shut down" in fleet.pg.server_log()


# ---- store-and-forward -----------------------------------------------------

@pytest.fixture
def forwarder(fleet):
    """A receiver with HrflowSpool and HrflowQueue: the local spool answers
    202, its dispatcher forwards into the queue."""
    spool = os.path.join(fleet.scratch, "fleet-forward-spool")
    server = fleet.receiver("fleet-forward", spool=spool)
    yield server
    server.stop()
    fleet.receivers.remove(server)


@pytest.mark.expect_log(*DB_DOWN)
def test_store_and_forward_with_the_database_down_then_back(fleet, forwarder):
    fleet.worker("a")
    fleet.pg.stop("fast")
    try:
        keys = [f"fwd-{i}" for i in range(10)]
        for key in keys:
            status, data = post(forwarder, "/count", [event(key)])
            assert status == 202, data
        time.sleep(1.5)
        assert lines(os.path.join(fleet.out, "ran.log")) == []
    finally:
        fleet.pg.restart()
    assert wait_until(lambda: set(keys) <= ran(fleet.out)[1], timeout=30)
    time.sleep(1)
    runs, _ = ran(fleet.out)
    assert sorted(runs.values()) == [1] * 10
    spool_left = [name for state in ("new", "run", "retry")
                  for name in os.listdir(os.path.join(forwarder.spool, state))
                  if name.endswith(".json")]
    assert spool_left == []
