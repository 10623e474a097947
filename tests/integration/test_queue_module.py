"""Fleet mode's share of the module (SPEC 8): direct mode's 503
queue_unavailable, SetHandler hrflow-health, configtest's messages, the
mod_status lines and the password that never reaches a log.

Most of these need no database: they are about what the module does when
there is none (a free port on 127.0.0.1, or a listener of ours that counts
who knocks).  Those that need one use the fleet tests' PostgreSQL fixture
(pgfixture.py) and are skipped where it cannot run."""
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time

import pytest

from conftest import (HTTPD, MODULES_DIR, MPM, Httpd, base_config, free_port,
                      httpd_env, register_secret, wait_until,
                      write_private)

JSON = {"Content-Type": "application/json"}
EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k1"}}'
DOWN = r"HF0080[23]: .*(cannot connect|no commit|next try|connection)"


def dead_url():
    """A queue nobody answers at: connection refused at once."""
    return f"postgresql://hrflow@127.0.0.1:{free_port()}/hrflow"


class Knocks:
    """A TCP listener that counts connections and closes each at once:
    libpq's attempts to reach a queue there fail, and are counted."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.done = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self):
        self.done = True
        self.sock.close()


class BlackHole:
    """A port whose connections are never answered: the kernel completes
    the handshake into the backlog, nobody reads."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def queue_server(scratch, name, queue_lines, extra=""):
    h = f"{scratch}/handlers"
    server = Httpd(name, scratch)
    server.write_config(f"""LoadModule status_module {MODULES_DIR}/mod_status.so
<Location /server-status>
    SetHandler server-status
</Location>
<Location /health>
    SetHandler hrflow-health
</Location>
<Location /q>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowHandler * {h}/count.sh {scratch}/out
</Location>
{queue_lines}
{extra}""")
    return server


@pytest.fixture(scope="module")
def no_database(scratch):
    """Direct mode with no database behind HrflowQueue."""
    password = register_secret("queue-pw-" + secrets.token_hex(6))
    path = os.path.join(scratch, "queue-module.password")
    write_private(path, password + "\n")
    server = queue_server(scratch, "queue-down",
                          f"HrflowQueue {dead_url()}\n"
                          f"HrflowQueuePasswordFile {path}\n"
                          "HrflowQueueTimeout 1\nHrflowWorker off\n"
                          "LogLevel warn hrflow:debug")
    server.password = password
    server.start()
    yield server
    server.stop()


@pytest.mark.expect_log(DOWN)
def test_no_database_503_queue_unavailable(no_database):
    start = time.time()
    r, body = no_database.request("POST", "/q", EVENT, JSON)
    took = time.time() - start
    assert r.status == 503
    assert json.loads(body) == {"status": "error",
                                "error": "queue_unavailable"}
    assert took < 5, took
    # Every later one too, answered at once while the queue is down.
    for _ in range(3):
        r, body = no_database.request("POST", "/q", EVENT, JSON)
        assert r.status == 503
    assert "HF00803" in no_database.error_log(wait_for="HF00803")


@pytest.mark.expect_log(DOWN)
def test_no_database_health_503_with_reason(no_database):
    r, body = no_database.request("GET", "/health")
    assert r.status == 503
    answer = json.loads(body)
    assert answer["status"] == "error"
    assert answer["error"] == "queue_unavailable"
    assert "connect" in answer["reason"], answer
    assert r.getheader("Content-Type") == "application/json"


@pytest.mark.expect_log(DOWN)
def test_no_database_status_says_why(no_database):
    r, body = no_database.request("GET", "/server-status?auto")
    assert r.status == 200
    text = body.decode()
    assert re.search(r"^HrflowQueueError: .*connect", text, re.M), text
    assert "HrflowQueueCountedSecondsAgo: " in text
    assert "HrflowProcessQueueCommitted: " in text


@pytest.mark.expect_log(DOWN)
def test_password_never_logged(no_database):
    """The password file's password, at LogLevel debug, through refused
    requests, health checks and status pages (conftest fails the test on
    a registered secret in any log)."""
    for path in ("/q", "/health", "/server-status?auto", "/server-status"):
        no_database.request("POST" if path == "/q" else "GET", path,
                            EVENT if path == "/q" else b"", JSON)
    log = no_database.error_log()
    assert no_database.password not in log
    assert "HF0080" in log


@pytest.mark.expect_log(DOWN)
def test_password_in_the_url_is_not_logged(scratch):
    inline = register_secret("inline-pw-" + secrets.token_hex(6))
    port = free_port()
    server = queue_server(scratch, "queue-inline",
                          f"HrflowQueue postgresql://hrflow:{inline}@127.0.0.1:"
                          f"{port}/hrflow?password={inline}\n"
                          "HrflowQueueTimeout 1\nHrflowWorker off\n"
                          "LogLevel warn hrflow:debug")
    server.start()
    try:
        r, _ = server.request("POST", "/q", EVENT, JSON)
        assert r.status == 503
        r, body = server.request("GET", "/server-status")
        assert inline.encode() not in body
        log = server.error_log(wait_for="HF00803")
        assert inline not in log
        assert "hrflow:***@127.0.0.1" in log
    finally:
        server.stop()


@pytest.mark.expect_log(r"HF0080[23]: ")
def test_status_and_health_do_not_query_per_hit(scratch):
    """Twenty status pages and health checks in a row reach the database
    (here a listener that counts connections) a few times at most: the
    counts are cached and a lost queue is retried with backoff."""
    knocks = Knocks()
    server = queue_server(scratch, "queue-knocks",
                          f"HrflowQueue postgresql://hrflow@127.0.0.1:"
                          f"{knocks.port}/hrflow\n"
                          "HrflowQueueTimeout 1\nHrflowWorker off")
    server.start()
    try:
        time.sleep(0.5)
        before = knocks.count
        for _ in range(10):
            r, _ = server.request("GET", "/server-status?auto")
            assert r.status == 200
            r, _ = server.request("GET", "/health")
            assert r.status == 503
        # Backoff 0.25 s doubling, ServerLimit 2 processes: far below 20.
        assert knocks.count - before <= 8, knocks.count - before
    finally:
        server.stop()
        knocks.close()


@pytest.mark.expect_log(DOWN)
def test_a_silent_database_costs_a_bounded_wait(scratch):
    """A database host that answers nothing: every request is answered
    503 within HrflowQueueTimeout, or for the one connecting, within
    libpq's connect_timeout (whole seconds, at least 2)."""
    hole = BlackHole()
    server = queue_server(scratch, "queue-blackhole",
                          f"HrflowQueue postgresql://hrflow@127.0.0.1:"
                          f"{hole.port}/hrflow\n"
                          "HrflowQueueTimeout 1\nHrflowWorker off")
    try:
        server.start()
        took = {}

        def post(i):
            start = time.time()
            r, body = server.request("POST", "/q", EVENT, JSON)
            took[i] = (r.status, time.time() - start)

        threads = [threading.Thread(target=post, args=(i,))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {status for status, _ in took.values()} == {503}
        assert max(t for _, t in took.values()) < 4, took
        if MPM != "prefork":
            # One process's requests: those not connecting give up at
            # their own timeout.  (Under prefork each may be the one that
            # connects.)
            assert sum(t < 1.8 for _, t in took.values()) >= 6, took
    finally:
        server.stop()
        hole.close()


def test_health_200_in_spool_mode_then_503_when_unwritable(scratch):
    spool = os.path.join(scratch, "health-spool")
    server = queue_server(scratch, "health-spool", f"HrflowSpool {spool}")
    server.start()
    try:
        r, body = server.request("GET", "/health")
        assert (r.status, json.loads(body)) == (200, {"status": "ok"})
        new = os.path.join(spool, "new")
        mode = os.stat(new).st_mode & 0o7777
        os.chmod(new, 0o500)
        try:
            r, body = server.request("GET", "/health")
        finally:
            os.chmod(new, mode)
        if os.geteuid() == 0 and os.stat(new).st_uid == 0:
            pytest.skip("the spool belongs to root: nobody is kept out")
        answer = json.loads(body)
        assert r.status == 503, answer
        assert answer["error"] == "spool_unavailable"
        assert "new" in answer["reason"]
        r, body = server.request("GET", "/health")
        assert r.status == 200
    finally:
        server.stop()


def test_health_200_in_synchronous_mode(scratch):
    server = queue_server(scratch, "health-sync", "")
    server.start()
    try:
        r, body = server.request("GET", "/health")
        assert (r.status, json.loads(body)) == (200, {"status": "ok"})
    finally:
        server.stop()


# ---- configtest -------------------------------------------------------------

def configtest(scratch, name, queue_lines, timeout=60):
    root = os.path.join(scratch, "servers", name)
    os.makedirs(os.path.join(root, "run"), exist_ok=True)
    conf = os.path.join(root, "httpd.conf")
    h = f"{scratch}/handlers"
    with open(conf, "w") as f:
        f.write(base_config(root, free_port(), scratch) + queue_lines
                + "\n<Location /q>\n    SetHandler hrflow-webhook\n"
                  "    HrflowSignature optional\n"
                  f"    HrflowHandler * {h}/count.sh {scratch}/out\n"
                  "</Location>\n")
    start = time.time()
    r = subprocess.run([HTTPD, "-t", "-f", conf], capture_output=True,
                       text=True, env=httpd_env(), timeout=timeout)
    return r, time.time() - start


def test_configtest_needs_no_database(scratch):
    """A black hole on the queue's port: configtest does not knock."""
    knocks = Knocks()
    try:
        r, took = configtest(scratch, "ct-nodb",
                             f"HrflowQueue postgresql://hrflow@127.0.0.1:"
                             f"{knocks.port}/hrflow")
        assert r.returncode == 0, r.stderr
        assert "Syntax OK" in r.stderr
        assert knocks.count == 0
    finally:
        knocks.close()


def test_configtest_unreadable_password_file(scratch):
    missing = os.path.join(scratch, "no-such.password")
    r, _ = configtest(scratch, "ct-pw", f"HrflowQueue {dead_url()}\n"
                      f"HrflowQueuePasswordFile {missing}")
    assert r.returncode != 0
    assert f"HrflowQueuePasswordFile: cannot read {missing}" in r.stderr


def test_configtest_empty_password_file(scratch):
    empty = os.path.join(scratch, "empty.password")
    write_private(empty, "\n")
    r, _ = configtest(scratch, "ct-empty", f"HrflowQueue {dead_url()}\n"
                      f"HrflowQueuePasswordFile {empty}")
    assert r.returncode != 0
    assert "holds no password" in r.stderr


def test_configtest_password_file_that_is_a_fifo(scratch):
    """Root reads the file: a FIFO there is refused, not waited on."""
    fifo = os.path.join(scratch, "queue.fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo, 0o600)
    r, took = configtest(scratch, "ct-fifo", f"HrflowQueue {dead_url()}\n"
                         f"HrflowQueuePasswordFile {fifo}", timeout=20)
    assert r.returncode != 0
    assert "not a regular file" in r.stderr


def test_configtest_refuses_what_is_not_a_libpq_uri_unechoed(scratch):
    """Whatever it is, it may hold a password: not in the message."""
    secret = register_secret("uri-pw-" + secrets.token_hex(4))
    r, _ = configtest(scratch, "ct-uri",
                      f"HrflowQueue mysql://u:{secret}@127.0.0.1/hrflow")
    assert r.returncode != 0
    assert "HrflowQueue: not a postgresql:// URI" in r.stderr
    assert secret not in r.stderr


def test_configtest_refuses_a_bad_queue_name(scratch):
    r, _ = configtest(scratch, "ct-name", f"HrflowQueue {dead_url()}\n"
                      "HrflowQueueName Bad-Name")
    assert r.returncode != 0
    assert "HrflowQueueName" in r.stderr


# ---- with a database (the fleet tests' PostgreSQL fixture) ----------------

@pytest.fixture(scope="module")
def pg(scratch):
    pgfixture = pytest.importorskip("pgfixture")
    server = pgfixture.start_postgres(scratch, "queue-module")
    yield server
    pgfixture.stop_postgres(server)


def queued_rows(pg):
    return int(pg.sql(f"SELECT count(*) FROM {pg.table()}").strip())


def status_lines(server):
    r, body = server.request("GET", "/server-status?auto")
    assert r.status == 200
    return dict(line.split(": ", 1) for line in body.decode().splitlines()
                if line.startswith("Hrflow"))


@pytest.fixture(scope="module")
def direct(scratch, pg):
    """Direct mode against the database, no worker: events stay queued."""
    server = queue_server(scratch, "queue-direct",
                          f"HrflowQueue {pg.url}\n"
                          f"HrflowQueuePasswordFile {pg.password_file}\n"
                          f"HrflowQueueName {pg.name}\n"
                          "HrflowQueueTimeout 2\nHrflowWorker off")
    server.start()
    yield server
    server.stop()


def test_direct_202_is_committed_before_the_answer(direct, pg):
    pg.clear()
    r, body = direct.request("POST", "/q", EVENT, JSON)
    assert r.status == 202, body
    assert json.loads(body)["queued"] == 1
    # Seen by another session the moment the answer is in.
    assert queued_rows(pg) == 1
    state = pg.sql(f"SELECT state, order_key FROM {pg.table()}").strip()
    assert state == "queued|profile:k1"


def test_concurrent_requests_share_statements(direct, pg):
    pg.clear()
    before = status_lines(direct)
    answers = []

    def post(i):
        body = json.dumps({"type": "profile.parsing.success",
                           "profile": {"key": f"k{i % 7}"}}).encode()
        answers.append(direct.request("POST", "/q", body, JSON)[0].status)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [202] * 60
    assert queued_rows(pg) == 60
    after = status_lines(direct)
    events = (int(after["HrflowProcessQueueCommitted"])
              - int(before.get("HrflowProcessQueueCommitted", 0)))
    groups = (int(after["HrflowProcessQueueCommitGroups"])
              - int(before.get("HrflowProcessQueueCommitGroups", 0)))
    # This process's share (one of at most two): fewer statements than
    # events when its requests waited together.  A prefork process serves
    # one request at a time: nothing to share.
    if MPM != "prefork":
        assert events == 0 or groups < events, (groups, events)


def test_health_and_status_with_the_database(direct, pg):
    pg.clear()
    for _ in range(3):
        assert direct.request("POST", "/q", EVENT, JSON)[0].status == 202
    r, body = direct.request("GET", "/health")
    assert (r.status, json.loads(body)) == (200, {"status": "ok"})
    # Counted at most every 5 s per process: wait for a fresh count.
    assert wait_until(lambda: status_lines(direct).get("HrflowQueueQueued")
                      == "3", timeout=15)
    assert "HrflowQueueError" not in status_lines(direct)


@pytest.mark.expect_log(r"HF0080[23]: ", r"HF00804: ")
def test_database_stopped_then_back(direct, pg):
    """503 queue_unavailable while it is gone, health 503 with the
    reason, 202 again once it is back (reconnected with backoff)."""
    pg.clear()
    assert direct.request("POST", "/q", EVENT, JSON)[0].status == 202
    pg.stop("fast")
    try:
        r, body = direct.request("POST", "/q", EVENT, JSON)
        assert r.status == 503
        assert json.loads(body)["error"] == "queue_unavailable"
        r, body = wait_until(
            lambda: (lambda x: x if x[0].status == 503 else None)(
                direct.request("GET", "/health")), timeout=10)
        assert json.loads(body)["error"] == "queue_unavailable"
    finally:
        pg.restart()
    assert wait_until(lambda: direct.request("POST", "/q", EVENT,
                                             JSON)[0].status == 202,
                      timeout=20)
    assert wait_until(lambda: direct.request("GET", "/health")[0].status
                      == 200, timeout=10)
    assert queued_rows(pg) >= 2


@pytest.mark.expect_log(r"HF0080[23]: ")
def test_schema_missing_is_said(scratch, pg):
    """A queue name with no schema: 503, and the log names the fix."""
    server = queue_server(scratch, "queue-noschema",
                          f"HrflowQueue {pg.url}\n"
                          f"HrflowQueuePasswordFile {pg.password_file}\n"
                          "HrflowQueueName nosuchqueue\n"
                          "HrflowQueueTimeout 2\nHrflowWorker off")
    server.start()
    try:
        r, body = server.request("POST", "/q", EVENT, JSON)
        assert r.status == 503
        r, body = server.request("GET", "/health")
        assert r.status == 503
        assert "hrflowctl init" in json.loads(body)["reason"]
        assert "hrflowctl init" in server.error_log(wait_for="HF00802")
    finally:
        server.stop()


def test_worker_started_by_apache_runs_the_event(scratch, pg):
    """HrflowWorker on: Apache's own worker claims and runs the event."""
    pg.clear()
    out = os.path.join(scratch, "queue-worker-out")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    server = Httpd("queue-worker", scratch)
    server.write_config(f"""<Location /q>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowHandler * {scratch}/handlers/count.sh {out}
</Location>
HrflowQueue {pg.url}
HrflowQueuePasswordFile {pg.password_file}
HrflowQueueName {pg.name}
""")
    server.start()
    try:
        r, body = server.request("POST", "/q", EVENT, JSON)
        assert r.status == 202, body
        assert wait_until(lambda: pg.sql(
            f"SELECT state FROM {pg.table()}").strip() == "done",
            timeout=30), pg.sql(f"SELECT state, last_result FROM "
                                f"{pg.table()}")
        assert os.listdir(out)
    finally:
        server.stop()


# ---- HrflowWorker on: the worker process's life -----------------------------

def helpers(server):
    """Apache's helper processes: children of the parent that lead a
    session of their own (server processes do not)."""
    parent = int(open(os.path.join(server.root, "httpd.pid")).read())
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == parent and int(stat[3]) == int(pid) \
                and stat[0] != "Z":
            found.append(int(pid))
    return found


@pytest.mark.expect_log(r"HF00202: ", r"HF007\d\d: ", r"HF0080[23]: ")
def test_worker_started_restarted_and_stopped_with_apache(scratch):
    """One worker per queue, started again when it dies, replaced at a
    graceful restart, gone at stop; it runs as the server's user."""
    server = queue_server(scratch, "queue-helper",
                          f"HrflowQueue {dead_url()}\nHrflowQueueTimeout 1")
    server.start()
    try:
        first = wait_until(lambda: helpers(server), timeout=10)
        assert len(first) == 1, first
        status = open(f"/proc/{first[0]}/status").read()
        if os.geteuid() == 0:
            uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
            assert uid != "0", "the worker kept root"
        os.kill(first[0], 9)
        again = wait_until(lambda: [p for p in helpers(server)
                                    if p != first[0]], timeout=10)
        assert len(again) == 1, again
        r = server.apachectl("-k", "graceful")
        assert r.returncode == 0, r.stderr
        renewed = wait_until(lambda: [p for p in helpers(server)
                                      if p not in first + again], timeout=15)
        assert len(renewed) == 1, renewed
        assert wait_until(lambda: helpers(server) == renewed, timeout=15)
        pid = renewed[0]
    finally:
        server.stop()
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)


@pytest.mark.expect_log(r"HF00802: ")
def test_no_worker_when_off(scratch):
    server = queue_server(scratch, "queue-noworker",
                          f"HrflowQueue {dead_url()}\nHrflowQueueTimeout 1\n"
                          "HrflowWorker off")
    server.start()
    try:
        time.sleep(1)
        assert helpers(server) == []
    finally:
        server.stop()


@pytest.mark.expect_log(r"HF00802: ", r"HF00804: ")
def test_first_request_after_a_database_restart_gets_202(direct, pg):
    """The connection a restart broke is found broken by the next commit,
    which opens a new one and commits there: no 503 for it."""
    pg.clear()
    assert direct.request("POST", "/q", EVENT, JSON)[0].status == 202
    pg.stop("fast")
    pg.restart()
    answers = [direct.request("POST", "/q", EVENT, JSON)[0].status
               for _ in range(3)]
    assert answers == [202] * 3
    assert queued_rows(pg) >= 4


# ---- store-and-forward ------------------------------------------------------

@pytest.mark.expect_log(r"HF00810: ", r"HF00811: ")
def test_store_and_forward_with_the_database_down_then_back(scratch, pg):
    """HrflowSpool + HrflowQueue: 202 from the spool whatever the
    database does; the dispatcher forwards into the queue, waiting for it
    while it is down, without spending the event's tries."""
    pg.clear()
    spool = os.path.join(scratch, "forward-spool")
    server = queue_server(scratch, "queue-forward",
                          f"HrflowQueue {pg.url}\n"
                          f"HrflowQueuePasswordFile {pg.password_file}\n"
                          f"HrflowQueueName {pg.name}\n"
                          f"HrflowSpool {spool}\nHrflowRetry 1\n"
                          "HrflowRetryDelay 1\nHrflowWorker off")
    server.start()

    def waiting():
        return [n for s in ("new", "run", "retry")
                for n in os.listdir(os.path.join(spool, s))
                if n.endswith(".json")]

    try:
        r, body = server.request("POST", "/q", EVENT, JSON)
        assert r.status == 202, body
        assert wait_until(lambda: queued_rows(pg) == 1, timeout=20)
        assert wait_until(lambda: not waiting(), timeout=20)
        pg.stop("fast")
        try:
            for _ in range(3):
                r, body = server.request("POST", "/q", EVENT, JSON)
                assert r.status == 202, body
            r, body = server.request("GET", "/health")
            assert r.status == 200, body    # the spool answers
            # Longer than HrflowRetry's tries would last: none fails.
            time.sleep(4)
            assert len(waiting()) == 3
            assert not os.listdir(os.path.join(spool, "failed"))
        finally:
            pg.restart()
        assert wait_until(lambda: queued_rows(pg) == 4, timeout=60)
        assert wait_until(lambda: not waiting(), timeout=20)
        assert not os.listdir(os.path.join(spool, "failed"))
        keys = pg.sql(f"SELECT order_key, attempt FROM {pg.table()} "
                      "ORDER BY id").split()
        assert keys == ["profile:k1|0"] * 4
    finally:
        server.stop()


def vhosts_configtest(scratch, name, main_lines, vhost_lines):
    port = free_port()
    return configtest(scratch, name, f"{main_lines}\nListen 127.0.0.1:{port}\n"
                      f"<VirtualHost 127.0.0.1:{port}>\n    ServerName other\n"
                      f"{vhost_lines}\n</VirtualHost>")[0]


def test_configtest_one_queue_one_set_of_settings(scratch):
    url = dead_url()
    r = vhosts_configtest(scratch, "ct-q-same", f"HrflowQueue {url}",
                          "HrflowQueueTimeout 5")
    assert r.returncode == 0, r.stderr
    r = vhosts_configtest(scratch, "ct-q-differ", f"HrflowQueue {url}",
                          "HrflowQueueTimeout 2")
    assert r.returncode != 0
    assert "HF00806" in r.stderr and "HrflowQueueTimeout" in r.stderr


def test_configtest_one_spool_forwards_to_one_queue(scratch):
    spool = os.path.join(scratch, "ct-shared-spool")
    secret = register_secret("shared-pw-" + secrets.token_hex(4))
    r = vhosts_configtest(scratch, "ct-spool-queue",
                          f"HrflowSpool {spool}\nHrflowQueue {dead_url()}",
                          f"HrflowSpool {spool}\nHrflowQueue "
                          f"postgresql://u:{secret}@127.0.0.1/other")
    assert r.returncode != 0
    assert "HrflowQueue (two URLs)" in r.stderr
    assert secret not in r.stderr


@pytest.mark.expect_log(r"HF0031[57]: ", r"HF00202: ")
def test_graceful_restart_hands_back_the_running_claim(scratch, pg):
    """HrflowWorker on: a graceful restart (a logrotate reload) stops the
    worker and the handler it runs.  The cut try counts, and the event
    runs again at once under the next worker, not when the claim's lease
    (HrflowTimeout 30 s and the kill grace) would have passed."""
    pg.clear()
    out = os.path.join(scratch, "queue-graceful-out")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    handler = os.path.join(scratch, "queue-graceful.sh")
    with open(handler, "w") as f:
        f.write("#!/bin/sh\n"
                f"echo \"$HRFLOW_ATTEMPT $(date +%s.%N)\" >> {out}/starts\n"
                "sleep 6\n")
    os.chmod(handler, 0o755)
    server = Httpd("queue-graceful", scratch)
    server.write_config(f"""<Location /q>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowHandler * {handler}
</Location>
HrflowQueue {pg.url}
HrflowQueuePasswordFile {pg.password_file}
HrflowQueueName {pg.name}
""")
    starts = os.path.join(out, "starts")

    def tries():
        try:
            return [line.split() for line in open(starts)]
        except OSError:
            return []
    server.start()
    try:
        r, body = server.request("POST", "/q", EVENT, JSON)
        assert r.status == 202, body
        assert wait_until(lambda: len(tries()) == 1, timeout=30), tries()
        restarted = time.time()
        r = server.apachectl("-k", "graceful")
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: len(tries()) == 2, timeout=25), tries()
        attempt, at = tries()[1]
        assert attempt == "2"
        assert float(at) - restarted < 15, "waited for the lease"
    finally:
        server.stop()
