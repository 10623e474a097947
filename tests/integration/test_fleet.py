"""Fleet mode (SPEC section 8): two receivers commit to one PostgreSQL,
hrflow-worker processes claim and run the events.

The handlers' contract is durable mode's, field by field; one key's events
never run at once on any workers and run in commit order; retries and
`failed` as in durable mode; a worker claims only its own programs.
These tests run once in scripts/test.sh (not under every MPM)."""
import json
import os
import threading
import time

import pytest


from conftest import Httpd, SECRETS, lines, records, wait_until
from hrflow_sign import body_signature
from pgfixture import fleet, fleet_module      # noqa: F401 (fixtures)

JSON = {"Content-Type": "application/json"}


def event(key, message="m", kind="profile.parsing.success"):
    return {"type": kind, "message": message, "profile": {"key": key}}


def post(server, path, events, headers=None):
    body = json.dumps(events).encode()
    r, data = server.request("POST", path, body, dict(JSON, **(headers or {})))
    return r.status, data


def fleet_runs(out):
    """fleet.sh's log: one dict per start or end line."""
    runs = []
    for line in lines(os.path.join(out, "fleet.log")):
        what, key, message, delivery, attempt, parent, pid, t = line.split()
        runs.append({"what": what, "key": key, "message": message,
                     "delivery": delivery, "attempt": int(attempt),
                     "worker": int(parent), "pid": int(pid), "t": float(t)})
    return runs


def spans(out):
    """(delivery, attempt) -> its run: start, end, key, message, worker."""
    found = {}
    for run in fleet_runs(out):
        span = found.setdefault((run["delivery"], run["attempt"]), dict(run))
        span[run["what"]] = run["t"]
    return found


# ---- the handler's contract ------------------------------------------------

def spool_twin(scratch, out):
    """Durable mode with the same endpoint and handler: the reference."""
    spool = os.path.join(scratch, "fleet-parity-spool")
    server = Httpd("fleet-parity-spool", scratch)
    server.write_config(
        f"HrflowSpool {spool}\n<Location /parity>\n"
        "    SetHandler hrflow-webhook\n"
        f"    HrflowSecret {SECRETS[0]}\n"
        f"    HrflowHandler * {scratch}/handlers/record.sh {out}\n"
        "</Location>\n")
    return server


def test_contract_parity_with_durable_mode(fleet, scratch):
    """Same variables, standard input and working directory as the spool
    dispatcher gives, for a signed batch of two, through either receiver."""
    ref_out = os.path.join(scratch, "fleet-parity-out")
    os.makedirs(ref_out, exist_ok=True)
    os.chmod(ref_out, 0o777)
    for name in os.listdir(ref_out):
        os.unlink(os.path.join(ref_out, name))
    batch = [{"type": "profile.parsing.success", "origin": "api",
              "message": "parsed", "profile": {"key": "p-1", "source":
                                                {"key": "s-1"}},
              "tags": [{"name": "a"}, {"name": "b", "value": 1.5}],
              "flag": True, "none": None},
             {"type": "job.storing.update", "job": {"key": "j-1",
                                                     "board": {"key": "b"}}}]
    body = json.dumps(batch).encode()
    headers = dict(JSON, **{"HrFlow-Signature":
                            body_signature(SECRETS[0], body)})
    reference = spool_twin(scratch, ref_out)
    reference.start()
    try:
        r, data = reference.request("POST", "/parity", body, headers)
        assert r.status == 202, data
        assert wait_until(lambda: len(records(ref_out)) == 2), \
            reference.error_log()
    finally:
        reference.stop()
    expected = records(ref_out)

    fleet.worker("w1")
    for receiver in (fleet.a, fleet.b):
        for name in os.listdir(fleet.out):
            if os.path.isfile(os.path.join(fleet.out, name)):
                os.unlink(os.path.join(fleet.out, name))
        r, data = receiver.request("POST", "/parity", body, headers)
        assert r.status == 202, data
        assert json.loads(data) == {"status": "accepted", "events": 2,
                                    "queued": 2, "ignored": 0}
        assert wait_until(lambda: len(records(fleet.out)) == 2)
        got = sorted(records(fleet.out),
                     key=lambda x: x["env"]["HRFLOW_EVENT_INDEX"])
        want = sorted(expected, key=lambda x: x["env"]["HRFLOW_EVENT_INDEX"])
        for g, w in zip(got, want):
            assert g["stdin"] == w["stdin"]
            assert g["cwd"] == w["cwd"]
            assert g["env"]["HRFLOW_ATTEMPT"] == "1"
            gd, wd = g["env"].pop("HRFLOW_DELIVERY_ID"), \
                w["env"].pop("HRFLOW_DELIVERY_ID")
            assert gd != wd and len(gd) == len(wd)
            for name in sorted(set(g["env"]) | set(w["env"])):
                assert g["env"].get(name) == w["env"].get(name), name
            w["env"]["HRFLOW_DELIVERY_ID"] = wd


# ---- per-key order, fleet-wide ---------------------------------------------

def test_per_key_order_fleet_wide(fleet):
    """Six events of one key, sent alternately to both receivers, each once
    the previous was answered: they run one at a time, in that order, on
    whichever worker; six other keys run beside them."""
    workers = [fleet.worker("w1", concurrency=2),
               fleet.worker("w2", concurrency=2)]
    for i in range(6):
        receiver = (fleet.a, fleet.b)[i % 2]
        status, data = post(receiver, "/fleet", [event("same", f"m{i}"),
                                                 event(f"other-{i}", "x")])
        assert status == 202, data
    assert wait_until(lambda: len(fleet_runs(fleet.out)) == 24, timeout=40)
    found = spans(fleet.out)
    assert all(s["attempt"] == 1 for s in found.values())
    same = sorted((s for s in found.values() if s["key"] == "same"),
                  key=lambda s: s["start"])
    assert [s["message"] for s in same] == [f"m{i}" for i in range(6)]
    for earlier, later in zip(same, same[1:]):
        assert later["start"] >= earlier["end"], "one key ran twice at once"
    everything = sorted(found.values(), key=lambda s: s["start"])
    overlapped = any(b["start"] < a["end"] and a["key"] != b["key"]
                     for a, b in zip(everything, everything[1:]))
    assert overlapped, "events of different keys did not run side by side"
    ran_on = {s["worker"] for s in found.values()}
    assert ran_on <= {w.pid for w in workers}
    assert len(ran_on) == 2, "one worker ran everything"


def test_commits_out_of_id_order_never_overlap(fleet):
    """The trap: ids are taken at insert, rows appear at commit.  A
    transaction stores "first" and stays open (a slow receiver); "second",
    of the same key, arrives at the other receiver meanwhile.  With the
    workers running, "second" must neither run before "first" nor beside
    it once "first" commits."""
    pg = fleet.pg
    status, _ = post(fleet.a, "/slow", [event("ooo", "first")])
    assert status == 202
    envelope, key, program, timeout = pg.sql(
        f"SELECT encode(envelope, 'base64'), order_key, program, timeout "
        f"FROM {pg.table()}").replace("\n", "").split("|")
    pg.sql(f"DELETE FROM {pg.table()}")
    workers = [fleet.worker("w1"), fleet.worker("w2")]
    session = pg.psql_session()
    try:
        session.stdin.write(
            "BEGIN;\n"
            f"SELECT {pg.name}_accept(ARRAY[decode('{envelope}', 'base64')],"
            f" ARRAY['{key}'], ARRAY['{program}'], ARRAY[{timeout}],"
            " ARRAY[(extract(epoch FROM now()) * 1000000)::int8]);\n"
            "SELECT 'stored, not committed';\n")
        session.stdin.flush()
        assert "stored, not committed" in session.stdout.readline() + \
            session.stdout.readline()
        answer = {}

        def second():
            t = time.time()
            answer["status"] = post(fleet.b, "/slow",
                                    [event("ooo", "second")])[0]
            answer["waited"] = time.time() - t
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.8)
        session.stdin.write("COMMIT;\n")
        session.stdin.close()
        assert session.wait(10) == 0, session.stderr.read()
        thread.join()
    finally:
        if session.poll() is None:
            session.kill()
    assert answer["status"] == 202
    # The second waited for the first's key: its commit came after.
    assert answer["waited"] >= 0.5, answer
    assert wait_until(lambda: len(fleet_runs(fleet.out)) == 4, timeout=20)
    found = sorted(spans(fleet.out).values(), key=lambda s: s["start"])
    assert [s["message"] for s in found] == ["first", "second"]
    assert found[1]["start"] >= found[0]["end"], "one key ran twice at once"
    assert {s["worker"] for s in found} <= {w.pid for w in workers}
    ids = pg.sql(f"SELECT id FROM {pg.table()} ORDER BY received").split()
    assert ids == sorted(ids, key=int)       # ids follow commit order


# ---- retries and failed ----------------------------------------------------

@pytest.mark.expect_log(r"output: not yet \(try [12]\)",
                        r"attempt=[12] handler=\S*/flaky\.sh result=exit 1")
def test_retried_with_growing_delays_then_done(fleet):
    fleet.worker("w1")
    status, _ = post(fleet.a, "/flaky", [event("k-flaky")])
    assert status == 202
    path = os.path.join(fleet.out, "flaky.log")
    assert wait_until(lambda: len(lines(path)) == 3, timeout=20)
    tries = [line.split() for line in lines(path)]
    assert [t[1] for t in tries] == ["1", "2", "3"]
    assert len({t[0] for t in tries}) == 1            # one delivery id
    t = [float(x[2]) for x in tries]
    assert t[1] - t[0] >= 0.9 and t[2] - t[1] >= 1.9
    time.sleep(1.5)
    assert len(lines(path)) == 3                       # done: never again


@pytest.mark.expect_log(r"output: boom: the database is down",
                        r"attempt=[123] handler=\S*/broken\.sh result=exit 7",
                        r"HF00708: queue hrflow: .*exit 7")
def test_failed_after_the_last_try_then_requeued(fleet):
    fleet.worker("w1")
    status, _ = post(fleet.b, "/broken", [event("k-broken")])
    assert status == 202
    path = os.path.join(fleet.out, "broken.log")
    assert wait_until(lambda: len(lines(path)) == 3, timeout=20)
    delivery = lines(path)[0].split()[0]
    assert [x.split()[1] for x in lines(path)] == ["1", "2", "3"]

    def listing():
        r = fleet.pg.hrflowctl("list", fleet.pg.url)
        return r.returncode == 0 and "failed: 1" in r.stdout and r.stdout
    shown = wait_until(listing, timeout=10)
    assert shown and delivery in shown, shown
    row = [x for x in shown.splitlines() if delivery in x][0]
    event_id = row.split()[0]
    r = fleet.pg.hrflowctl("show", fleet.pg.url, event_id)
    assert r.returncode == 0, r.stderr
    assert "state: failed" in r.stdout and "exit 7" in r.stdout
    assert "boom: the database is down" in r.stdout
    time.sleep(1.5)
    assert len(lines(path)) == 3                       # failed: left alone

    open(os.path.join(fleet.out, "fixed"), "w").close()
    r = fleet.pg.hrflowctl("requeue", fleet.pg.url, event_id)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: len(lines(path)) == 4)
    assert lines(path)[-1].split() == [delivery, "1"]  # tries from zero
    assert wait_until(lambda: "failed: 0" in
                      fleet.pg.hrflowctl("list", fleet.pg.url).stdout)


def test_each_event_runs_with_its_own_handler_arguments(fleet):
    """One program, two HrflowHandler lines with other arguments (as with
    an interpreter and two scripts): each event runs with the arguments of
    the line that routed it, as in durable mode (SPEC 4)."""
    fleet.worker("w1")
    for path, key in (("/count", "k-first"), ("/count-too", "k-too"),
                      ("/count", "k-again")):
        status, _ = post(fleet.a, path, [event(key)])
        assert status == 202
    first = os.path.join(fleet.out, "ran.log")
    too = os.path.join(fleet.out, "too", "ran.log")
    assert wait_until(lambda: len(lines(first)) + len(lines(too)) == 3)
    time.sleep(0.5)
    # Different keys: they may run side by side, in either order.
    assert sorted(x.split()[2] for x in lines(first)) == ["k-again",
                                                          "k-first"]
    assert [x.split()[2] for x in lines(too)] == ["k-too"]


# ---- the allowlist ---------------------------------------------------------

def test_a_worker_claims_only_its_own_programs(fleet):
    """Write access to the table is not code execution on the workers: an
    event whose handler is not one of a worker's programs stays queued."""
    fleet.worker("fleet-only", paths=["/fleet"])
    status, _ = post(fleet.a, "/count", [event("k-count")])
    assert status == 202
    status, _ = post(fleet.b, "/fleet", [event("k-fleet")])
    assert status == 202
    ran = os.path.join(fleet.out, "ran.log")
    assert wait_until(lambda: len(fleet_runs(fleet.out)) == 2)
    time.sleep(2)
    assert lines(ran) == []
    listing = fleet.pg.hrflowctl("list", fleet.pg.url)
    assert "queued: 1" in listing.stdout, listing.stdout + listing.stderr
    fleet.worker("count-only", paths=["/count"])
    assert wait_until(lambda: lines(ran))
    assert [x.split()[1:] for x in lines(ran)] == [["1", "k-count"]]
