"""Durable mode when things go wrong: a dispatcher killed mid-handler,
storage that refuses a state change, files the dispatcher cannot run.
Every 202 runs, or ends in failed/ with a status that says why; a success
never runs again; a storage error is retried with growing waits."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import (BUILD, Httpd, gone, in_state, lines, run_user,
                      spool_empty, wait_until)

HRFLOWCTL = os.path.join(BUILD, "tools", "hrflowctl")
JSON = {"Content-Type": "application/json"}




def event(key, kind="profile.parsing.success"):
    return json.dumps({"type": kind, "profile": {"key": key}}).encode()


@pytest.fixture(scope="module")
def faulty(scratch):
    out = os.path.join(scratch, "faults-out")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    spool = os.path.join(scratch, "faults-spool")
    gone = os.path.join(scratch, "gone.sh")
    shutil.copy(os.path.join(scratch, "handlers", "count.sh"), gone)
    os.chmod(gone, 0o755)
    h = f"{scratch}/handlers"
    endpoints = {
        "q": f"{h}/count.sh {out}",
        "linger": f"{h}/linger.sh {out}",
        "lock-run": f"{h}/lockout.sh {out} {spool} run",
        "lock-retry": f"{h}/lockout.sh {out} {spool} retry",
        "gone": f"{gone} {out}",
    }
    text = "".join(
        f"<Location /{name}>\n    SetHandler hrflow-webhook\n"
        f"    HrflowSignature optional\n    HrflowHandler * {handler}\n"
        "</Location>\n" for name, handler in endpoints.items())
    server = Httpd("spool-faults", scratch)
    server.spool, server.out, server.gone = spool, out, gone
    server.write_config(f"HrflowSpool {spool}\nHrflowRetry 2\n"
                        f"HrflowRetryDelay 1\n{text}")
    server.start()
    assert wait_until(lambda: dispatcher_pid(server)), server.error_log()
    yield server
    for d in ("new", "run", "retry", "tmp", "done"):
        os.chmod(os.path.join(spool, d), 0o750)
    server.stop()


@pytest.fixture
def fresh(faulty):
    for name in os.listdir(faulty.out):
        os.unlink(os.path.join(faulty.out, name))
    for d in ("new", "run", "retry", "tmp", "done"):
        os.chmod(os.path.join(faulty.spool, d), 0o750)
    assert wait_until(lambda: spool_empty(faulty))
    return faulty


def dispatcher_pid(server):
    try:
        pid = int(open(os.path.join(server.spool, "dispatcher.pid")).read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None



def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_access_log_shows_the_event_in_durable_mode(fresh):
    body = event("k-access")
    r, _ = fresh.request("POST", "/q", body, JSON)
    assert r.status == 202
    line = wait_until(lambda: [x for x in fresh.access_log().splitlines()
                               if "POST /q " in x])[-1]
    assert line.split()[-2:] == ["profile.parsing.success",
                                 hashlib.sha256(body).hexdigest()]


@pytest.mark.expect_log(r"dispatcher \d+ died \(status 9\), starting it again")
def test_kill_9_of_the_dispatcher_ends_its_handlers(fresh):
    old = wait_until(lambda: dispatcher_pid(fresh))
    r, _ = fresh.request("POST", "/linger", event("k-linger"), JSON)
    assert r.status == 202
    pids_file = os.path.join(fresh.out, "linger.pids")
    assert wait_until(lambda: lines(pids_file))
    handler, child = (int(x) for x in lines(pids_file)[0].split())
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: gone(handler) and gone(child), timeout=20), \
        "a handler outlived its dispatcher"
    log = os.path.join(fresh.out, "linger.log")
    assert wait_until(lambda: any(x.endswith(" ok") for x in lines(log)))
    assert wait_until(lambda: spool_empty(fresh))
    time.sleep(1)
    runs = [x.split() for x in lines(log)]
    delivery = runs[0][0]
    # The try cut short counts: the next one is attempt 2, and only it
    # finishes.
    assert runs == [[delivery, "1", "start"], [delivery, "2", "start"],
                    [delivery, "2", "ok"]]


@pytest.mark.expect_log(r"spool: cannot remove \S+: Permission denied \(tried again later\)",
                         r"spool: cannot move \S+ to done/: Permission denied")
def test_a_success_that_cannot_leave_run_never_runs_again(fresh):
    run = os.path.join(fresh.spool, "run")
    r, _ = fresh.request("POST", "/lock-run", event("k-lock-run"), JSON)
    assert r.status == 202
    log = os.path.join(fresh.out, "lockout.log")
    assert wait_until(lambda: lines(log))
    name = wait_until(lambda: in_state(fresh, "run"))[0]
    assert wait_until(lambda: name in in_state(fresh, "done"))
    old = dispatcher_pid(fresh)
    r = fresh.apachectl("-k", "graceful")
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: dispatcher_pid(fresh) not in (None, old))
    time.sleep(2)
    assert len(lines(log)) == 1, "a succeeded event ran again"
    os.chmod(run, 0o750)              # storage comes back
    assert wait_until(lambda: spool_empty(fresh), timeout=70)
    assert len(lines(log)) == 1
    assert name in in_state(fresh, "done")


@pytest.mark.expect_log(r"handler=\S*/flaky\S* result=exit",
                         r"spool: cannot move \S+ to retry/: Permission denied \(retried from run/\)",
                         r"handler=\S+ result=exit \d+")
def test_a_retry_that_cannot_be_written_still_runs(fresh):
    r, _ = fresh.request("POST", "/lock-retry", event("k-lock-retry"), JSON)
    assert r.status == 202
    log = os.path.join(fresh.out, "lockout.log")
    assert wait_until(lambda: lines(log))
    assert wait_until(lambda: "(retried from run/)" in fresh.error_log())
    for d in ("tmp", "retry"):        # storage comes back
        os.chmod(os.path.join(fresh.spool, d), 0o750)
    assert wait_until(lambda: len(lines(log)) == 2, timeout=20)
    assert [x.split()[1] for x in lines(log)] == ["1", "2"]
    assert wait_until(lambda: spool_empty(fresh))
    assert in_state(fresh, "failed") == []


def envelope(handler, out):
    return json.dumps({
        "delivery_id": "fa" * 16, "event_id": "00" * 32,
        "type": "profile.parsing.success", "order_key": None,
        "received": 1, "attempt": 0, "next_attempt": 0, "last_result": None,
        "index": 0, "count": 1, "signature": "unsigned", "timeout": 30,
        "handler": [handler, out],
    })[:-1] + ',\n"event":{"type":"profile.parsing.success"}}\n'


def drop_in_new(server, name, text):
    """An event file put in new/ as root, owned by the server's user."""
    import pwd
    pw = pwd.getpwnam(run_user()[0])
    tmp = os.path.join(server.scratch, name)
    with open(tmp, "w") as f:
        f.write(text)
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.rename(tmp, os.path.join(server.spool, "new", name))


@pytest.mark.expect_log(r"spool: cannot move \S+ to run/: Permission denied \(tried again later\)")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chmod the spool")
def test_an_unwritable_new_folder_is_retried_without_spinning(fresh):
    new = os.path.join(fresh.spool, "new")
    pid = wait_until(lambda: dispatcher_pid(fresh))
    before_log = fresh.error_log().count("to run/: Permission denied")
    os.chmod(new, 0o500)
    try:
        name = "2000000000000000-0000-" + "fb" * 16 + ".json"
        drop_in_new(fresh, name, envelope(
            f"{fresh.scratch}/handlers/count.sh", fresh.out))
        cpu = cpu_seconds(pid)
        time.sleep(4)
        used = cpu_seconds(pid) - cpu
        tries = (fresh.error_log().count("to run/: Permission denied")
                 - before_log)
        assert 1 <= tries <= 4, f"{tries} tries in 4 s"
        assert used < 1.0, f"the dispatcher used {used:.2f} s of CPU in 4 s"
    finally:
        os.chmod(new, 0o750)
    ran = os.path.join(fresh.out, "ran.log")
    assert wait_until(lambda: lines(ran), timeout=20)
    assert wait_until(lambda: spool_empty(fresh))
    assert len(lines(ran)) == 1


def show(server, ident):
    r = subprocess.run([HRFLOWCTL, "show", server.spool, ident],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.expect_log(r"spool: \S+\.json: \S+: bad JSON",
                         r"moved to \S*failed")
def test_an_unreadable_event_file_ends_in_failed_with_a_reason(fresh):
    name = "2000000000000001-0000-" + "fc" * 16 + ".json"
    drop_in_new(fresh, name, '{"delivery_id": "fc", "event": {]}\n')
    assert wait_until(lambda: name in in_state(fresh, "failed"))
    shown = show(fresh, name)
    assert "state: failed" in shown
    assert "last status: unreadable: " in shown


@pytest.mark.expect_log(r"cannot run \S*/gone\.sh: No such file or directory",
                         r"handler=\S*/gone\.sh result=not started",
                         r"failed \d+ times: moved to \S*failed")
def test_a_vanished_handler_ends_in_failed_with_a_reason(fresh):
    os.unlink(fresh.gone)
    try:
        r, _ = fresh.request("POST", "/gone", event("k-gone"), JSON)
        assert r.status == 202
        failed = wait_until(lambda: [
            x for x in in_state(fresh, "failed")
            if fresh.gone in open(os.path.join(fresh.spool, "failed",
                                               x)).read()], timeout=30)
        shown = show(fresh, failed[0])
        assert (f"last status: not started: cannot run {fresh.gone}: "
                "No such file or directory") in shown
    finally:
        shutil.copy(os.path.join(fresh.scratch, "handlers", "count.sh"),
                    fresh.gone)
