"""hrflow-worker's config file (SPEC 8): hrflow.cgi's syntax and checks,
the queue's and the scheduler's directives, nothing of an endpoint.  No
database is needed: --check reads the file and stops."""
import os
import subprocess

import pytest

from conftest import BUILD

WORKER = os.path.join(BUILD, "tools", "hrflow-worker")
URL = "postgresql://worker@127.0.0.1:1/hrflow"

pytestmark = pytest.mark.skipif(not os.path.exists(WORKER),
                                reason="built without libpq")


@pytest.fixture
def wdir(scratch):
    d = os.path.join(scratch, "worker-conf")
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.chmod(d, 0o755)
    return d


def write(d, text, name="worker.conf", mode=0o600):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def check(conf):
    return subprocess.run([WORKER, "--config", conf, "--check"],
                          capture_output=True, text=True, timeout=30)


def test_every_worker_directive_accepted(wdir):
    pw = write(wdir, "sekret\n", "queue.password")
    conf = write(wdir, f"HrflowQueue {URL}\nHrflowQueuePasswordFile {pw}\n"
                 "HrflowQueueName fleet_1\nHrflowQueueTimeout 2\n"
                 "HrflowConcurrency 3\nHrflowRetry 2\nHrflowRetryDelay 1\n"
                 "HrflowHandler * /bin/true arg\n")
    r = check(conf)
    assert r.returncode == 0, r.stderr
    assert f"{conf}: ok" in r.stdout
    assert "sekret" not in r.stdout + r.stderr


@pytest.mark.parametrize("line", ["HrflowSecret s", "HrflowSpool /tmp/x",
                                  "HrflowWorker on", "HrflowTimeout 5"])
def test_endpoint_directives_refused(wdir, line):
    conf = write(wdir, f"HrflowQueue {URL}\nHrflowHandler * /bin/true\n"
                 f"{line}\n")
    r = check(conf)
    assert r.returncode == 1
    name = line.split()[0]
    assert f"line 3: {name}: hrflow-worker does not use it" in r.stderr
    assert "HF00713" in r.stderr


def test_queue_and_handler_required(wdir):
    r = check(write(wdir, "HrflowHandler * /bin/true\n"))
    assert r.returncode == 1 and "no HrflowQueue" in r.stderr
    r = check(write(wdir, f"HrflowQueue {URL}\n"))
    assert r.returncode == 1 and "no HrflowHandler" in r.stderr


def test_config_others_may_change_refused(wdir):
    conf = write(wdir, f"HrflowQueue {URL}\nHrflowHandler * /bin/true\n",
                 mode=0o666)
    r = check(conf)
    assert r.returncode == 1
    assert "writable by others" in r.stderr or "0666" in r.stderr, r.stderr


def test_password_file_others_may_read_refused(wdir):
    pw = write(wdir, "sekret\n", "queue.password", mode=0o644)
    conf = write(wdir, f"HrflowQueue {URL}\nHrflowQueuePasswordFile {pw}\n"
                 "HrflowHandler * /bin/true\n")
    r = check(conf)
    assert r.returncode == 1
    assert "readable or writable by other users (mode 0644)" in r.stderr
    assert "sekret" not in r.stderr


def test_bad_queue_name_refused(wdir):
    conf = write(wdir, f"HrflowQueue {URL}\nHrflowQueueName Bad-Name\n"
                 "HrflowHandler * /bin/true\n")
    r = check(conf)
    assert r.returncode == 1
    assert "line 2: HrflowQueueName" in r.stderr, r.stderr
