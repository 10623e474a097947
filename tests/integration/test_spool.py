"""Durable mode (SPEC section 6) against a real httpd: 202 is a promise."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (BUILD, Burst, Httpd, MODULES_DIR, in_state, lines,
                      spool_empty, wait_until)

HRFLOWCTL = os.path.join(BUILD, "tools", "hrflowctl")
JSON = {"Content-Type": "application/json"}
CONCURRENCY = 4




def spool_config(scratch, spool, out):
    h = f"{scratch}/handlers"
    loc = "\n".join(
        f"<Location /{name}>\n    SetHandler hrflow-webhook\n"
        f"    HrflowSignature optional\n    HrflowHandler * {h}/{script}\n"
        "</Location>"
        for name, script in [("q", f"count.sh {out}"),
                             ("flaky", f"flaky.sh {out}"),
                             ("broken", f"broken.sh {out}"),
                             ("ordered", f"ordered.sh {out} 0.3")])
    return f"""LoadModule status_module {MODULES_DIR}/mod_status.so
<Location /server-status>
    SetHandler server-status
</Location>
HrflowSpool {spool}
HrflowConcurrency {CONCURRENCY}
HrflowRetry 2
HrflowRetryDelay 1
{loc}
"""


@pytest.fixture(scope="module")
def spooled(scratch):
    out = os.path.join(scratch, "spool-out")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    spool = os.path.join(scratch, "spool")
    server = Httpd("spool", scratch)
    server.spool = spool
    server.out = out
    server.write_config(spool_config(scratch, spool, out))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh(spooled):
    for name in os.listdir(spooled.out):
        os.unlink(os.path.join(spooled.out, name))
    return spooled


def event(key, message="m", kind="profile.parsing.success"):
    return json.dumps({"type": kind, "message": message,
                       "profile": {"key": key}}).encode()


def test_202_and_the_handler_runs_later(fresh):
    r, data = fresh.request("POST", "/q", event("k-202"), JSON)
    assert r.status == 202
    assert json.loads(data) == {"status": "accepted", "events": 1,
                                "queued": 1, "ignored": 0}
    ran = wait_until(lambda: lines(os.path.join(fresh.out, "ran.log")))
    delivery, attempt, key = ran[0].split()
    assert (attempt, key) == ("1", "k-202")
    assert wait_until(lambda: spool_empty(fresh))
    log = fresh.error_log(wait_for=f"delivery={delivery} attempt=1")
    assert f"delivery={delivery} attempt=1 handler=" in log
    assert "result=exit 0 ms=" in log


def test_same_key_in_order_others_side_by_side(fresh):
    batch = [json.loads(event("same", f"m{i}")) for i in range(4)]
    batch += [json.loads(event(f"other-{i}", "x")) for i in range(4)]
    r, _ = fresh.request("POST", "/ordered", json.dumps(batch).encode(), JSON)
    assert r.status == 202
    path = os.path.join(fresh.out, "ordered.log")
    assert wait_until(lambda: len(lines(path)) == 16)
    runs = {}
    for line in lines(path):
        what, key, message, t = line.split()
        runs.setdefault((key, message), {})[what] = float(t)
    same = [runs[("same", f"m{i}")] for i in range(4)]
    for earlier, later in zip(same, same[1:]):
        assert later["start"] >= earlier["end"]
    others = sorted(runs[(f"other-{i}", "x")]["start"] for i in range(4))
    ends = sorted(runs[(f"other-{i}", "x")]["end"] for i in range(4))
    assert others[1] < ends[0], "events of different keys did not overlap"


@pytest.mark.expect_log(r"output: not yet \(try [12]\)",
                        r"attempt=[12] handler=\S*/flaky\.sh result=exit 1")
def test_failing_handler_retried_with_growing_delays(fresh):
    r, _ = fresh.request("POST", "/flaky", event("k-flaky"), JSON)
    assert r.status == 202
    path = os.path.join(fresh.out, "flaky.log")
    assert wait_until(lambda: len(lines(path)) == 3, timeout=20)
    assert wait_until(lambda: spool_empty(fresh))
    tries = [line.split() for line in lines(path)]
    assert [t[1] for t in tries] == ["1", "2", "3"]
    assert len({t[0] for t in tries}) == 1          # one delivery id
    t = [float(x[2]) for x in tries]
    assert t[1] - t[0] >= 0.9 and t[2] - t[1] >= 1.9
    assert t[2] - t[1] > t[1] - t[0]
    log = fresh.error_log(wait_for=f"delivery={tries[0][0]} attempt=3")
    assert f"delivery={tries[0][0]} attempt=2 handler=" in log
    time.sleep(1)
    assert len(lines(path)) == 3                     # success: never again


@pytest.mark.expect_log(r"output: boom: the database is down",
                        r"attempt=[123] handler=\S*/broken\.sh result=exit 7",
                        r"failed 3 times: moved to \S*/failed/")
def test_exhausted_event_lands_in_failed_and_requeues(fresh):
    r, _ = fresh.request("POST", "/broken", event("k-broken"), JSON)
    assert r.status == 202
    failed = wait_until(lambda: in_state(fresh, "failed"), timeout=20)
    assert len(failed) == 1
    base = os.path.join(fresh.spool, "failed", failed[0][:-5])
    assert open(base + ".status").read().strip() == "exit 7"
    assert "boom: the database is down" in open(base + ".output").read()
    runs = lines(os.path.join(fresh.out, "broken.log"))
    assert [x.split()[1] for x in runs] == ["1", "2", "3"]   # 1 + HrflowRetry
    delivery = runs[0].split()[0]
    envelope = json.load(open(base + ".json"))
    assert envelope["attempt"] == 3 and envelope["last_result"] == "exit 7"

    listing = subprocess.run([HRFLOWCTL, "list", fresh.spool],
                             capture_output=True, text=True)
    assert listing.returncode == 0
    assert "failed: 1" in listing.stdout and delivery in listing.stdout
    shown = subprocess.run([HRFLOWCTL, "show", fresh.spool, delivery[:10]],
                           capture_output=True, text=True)
    assert "state: failed" in shown.stdout and "exit 7" in shown.stdout

    open(os.path.join(fresh.out, "fixed"), "w").close()
    again = subprocess.run([HRFLOWCTL, "requeue", fresh.spool, delivery],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert wait_until(lambda: len(lines(os.path.join(fresh.out,
                                                     "broken.log"))) == 4)
    assert wait_until(lambda: spool_empty(fresh))
    assert in_state(fresh, "failed") == []
    last = lines(os.path.join(fresh.out, "broken.log"))[-1].split()
    assert last == [delivery, "1"]


def dispatcher_pid(server):
    try:
        pid = int(open(os.path.join(server.spool, "dispatcher.pid")).read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@pytest.mark.expect_log(r"dispatcher \d+ died \(status 9\), starting it again")
def test_dispatcher_restarts_when_killed(fresh):
    old = wait_until(lambda: dispatcher_pid(fresh))
    os.kill(old, signal.SIGKILL)
    r, _ = fresh.request("POST", "/q", event("while-dead"), JSON)
    assert r.status == 202
    new = wait_until(lambda: (dispatcher_pid(fresh) or old) != old and
                     dispatcher_pid(fresh), timeout=30)
    assert new and new != old
    ran = wait_until(lambda: lines(os.path.join(fresh.out, "ran.log")))
    assert ran[0].split()[2] == "while-dead"
    assert "dispatcher %d died" % old in fresh.error_log()


def test_status_page_counts(fresh):
    r, data = fresh.request("GET", "/server-status?auto")
    assert r.status == 200
    text = data.decode()
    for label in ("HrflowQueued: ", "HrflowRunning: ", "HrflowRetrying: ",
                  "HrflowFailed: "):
        assert label in text


# ---- bursts, crashes and restarts ------------------------------------------

def spool_burst(server):
    """Eight threads posting unique events to /q until stopped."""
    def send(key, n):
        r, _ = server.request("POST", "/q", event(key), JSON)
        return r.status
    return Burst(send, 8)


def apache_pids(server):
    parent = int(open(os.path.join(server.root, "httpd.pid")).read())
    kids = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True,
                          text=True).stdout.split()
    return [parent] + [int(k) for k in kids]


def handled(out):
    """delivery id -> runs, and the keys that ran."""
    runs, keys = {}, set()
    for line in lines(os.path.join(out, "ran.log")):
        delivery, _, key = line.split()
        runs[delivery] = runs.get(delivery, 0) + 1
        keys.add(key)
    return runs, keys


# Handlers of the killed dispatcher may be stopped by the new one.
@pytest.mark.expect_log(r"handler=\S*/count\.sh result=stopped")
def test_kill_9_of_every_apache_process_mid_burst(fresh):
    with spool_burst(fresh) as burst:
        time.sleep(1.5)
        pids = apache_pids(fresh)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    accepted = burst.accepted()
    unanswered = [k for k, s in burst.answers.items() if s is None]
    assert len(accepted) > 50
    # A killed parent may linger as a zombie where nothing reaps orphans
    # (containers), and httpd takes the pid file's live pid for a server.
    os.unlink(os.path.join(fresh.root, "httpd.pid"))
    fresh.start()
    assert wait_until(lambda: spool_empty(fresh) and
                      accepted <= handled(fresh.out)[1], timeout=120)
    runs, keys = handled(fresh.out)
    duplicates = sum(n - 1 for n in runs.values())
    print(f"202 answers {len(accepted)}, no answer {len(unanswered)}, "
          f"delivery ids handled {len(runs)}, duplicates {duplicates}")
    assert accepted <= keys                       # every 202 ran
    assert keys - accepted <= set(unanswered)     # the rest never got one
    assert len(runs) == len(keys)
    assert duplicates <= CONCURRENCY


# The old dispatcher stops its handlers: their events run again.
@pytest.mark.expect_log(r"handler=\S*/count\.sh result=stopped")
# Under the worker MPM the restarted children once saw HrflowSpool's path
# in freed memory ("spool <garbage> is not ready"): 503 for a while.
def test_graceful_restart_mid_burst(fresh):
    with spool_burst(fresh) as burst:
        time.sleep(1)
        r = fresh.apachectl("-k", "graceful")
        assert r.returncode == 0, r.stderr
        time.sleep(1.5)
    accepted = burst.accepted()
    assert len(accepted) > 50
    assert wait_until(lambda: spool_empty(fresh) and
                      accepted <= handled(fresh.out)[1], timeout=120)
    runs, keys = handled(fresh.out)
    assert accepted <= keys
    assert sum(n - 1 for n in runs.values()) <= CONCURRENCY
    statuses = set(burst.answers.values())
    assert statuses <= {202, None}


# ---- a spool that cannot take the event -----------------------------------

@pytest.mark.expect_log(r"spool: cannot write \S*/spool-ro/new/\S*: "
                        r"Permission denied")
def test_unwritable_spool_answers_503(scratch):
    out = os.path.join(scratch, "spool-out")
    spool = os.path.join(scratch, "spool-ro")
    server = Httpd("spool-ro", scratch)
    server.spool = spool
    server.write_config(spool_config(scratch, spool, out))
    server.start()
    tmp = os.path.join(spool, "new")
    try:
        assert wait_until(lambda: os.path.isdir(tmp)), server.error_log()
        os.chmod(tmp, 0o500)
        if os.access(tmp, os.W_OK) and os.geteuid() != 0:
            pytest.skip("cannot make the spool unwritable here")
        r, data = server.request("POST", "/q", event("k-503"), JSON)
        assert r.status == 503
        assert json.loads(data) == {"status": "error",
                                    "error": "spool_unavailable"}
        assert "spool: cannot write" in server.error_log()
        assert in_state(server, "new") == []
        os.chmod(tmp, 0o750)
        r, _ = server.request("POST", "/q", event("k-after"), JSON)
        assert r.status == 202
    finally:
        if os.path.isdir(tmp):
            os.chmod(tmp, 0o750)
        server.stop()


def test_configtest_refuses_a_spool_it_cannot_create(scratch):
    server = Httpd("spool-bad", scratch)
    server.write_config("HrflowSpool /nonexistent/dir/spool\n")
    r = server.apachectl("-t")
    assert r.returncode != 0
    assert "HrflowSpool: cannot create /nonexistent/dir/spool" in r.stderr
