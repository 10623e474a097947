"""A real PostgreSQL server for fleet mode's tests (SPEC section 8).

PostgreSQL refuses to run as root: as root, initdb, pg_ctl and the server
run as the `postgres` user, in a folder of the scratch folder that it owns
(the scratch folder is 0755, so it can reach it).  The server listens on
127.0.0.1 and a free port only, with fsync and synchronous_commit on: a
202 is a commit, and whether commits survive a crash is what the tests
check.  Clients log in with passwords (scram-sha-256): `postgres` for the
tests' own SQL (psql), `hrflow` for the receivers and workers, whose
password is in a file only the server's user (and root) may read, as
HrflowQueuePasswordFile wants it.

The schema comes from `hrflowctl init URL`.  Every fixture here stops what
it started, also when a test fails; an interrupted session is cleaned up
at exit.
"""
import atexit
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (BUILD, SECRETS, TEST_TMP, WATCHED, Httpd, free_port,
                      gone, lines_added, make_dir, register_secret, run_user,
                      wait_until, write_private)

HRFLOWCTL = os.path.join(BUILD, "tools", "hrflowctl")
WORKER = os.path.join(BUILD, "tools", "hrflow-worker")
QUEUE_NAME = "hrflow"


def pg_bindir():
    """HRFLOW_PG_BIN, else the newest server Debian installed."""
    if os.environ.get("HRFLOW_PG_BIN"):
        return os.environ["HRFLOW_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


PG_BIN = pg_bindir()


def pg_account():
    """Who runs the server: `postgres` as root, else whoever we are."""
    if os.geteuid() == 0:
        return pwd.getpwnam("postgres")
    return pwd.getpwuid(os.geteuid())


def as_user(account):
    """subprocess arguments that run a program as this account."""
    if os.geteuid() != 0 or account.pw_uid == 0:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid,
            "extra_groups": []}


class Postgres:
    """One server of our own: initialised, started, stopped, crashed."""

    def __init__(self, scratch, name):
        self.account = pg_account()
        self.dir = os.path.join(scratch, "pg-" + name)
        shutil.rmtree(self.dir, ignore_errors=True)
        make_dir(self.dir, 0o700)
        os.chown(self.dir, self.account.pw_uid, self.account.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.admin_password = register_secret("pg-admin-" + secrets.token_hex(8))
        self.password = register_secret("pg-hrflow-" + secrets.token_hex(8))
        self.user = "hrflow"
        self.database = "hrflow"
        self.name = QUEUE_NAME
        self.url = (f"postgresql://{self.user}@127.0.0.1:{self.port}/"
                    f"{self.database}")
        # Read by root (Apache's startup) and by the workers' user.
        self.password_file = os.path.join(scratch, f"pg-{name}.password")
        write_private(self.password_file, self.password + "\n")

    # -- running the server's programs ---------------------------------------
    def env(self):
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}
        return env

    def ctl(self, *args, check=True, timeout=90):
        r = subprocess.run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data,
                            *args], capture_output=True, text=True,
                           cwd=self.dir, env=self.env(), timeout=timeout,
                           **as_user(self.account))
        if check and r.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)}: {r.stderr}"
                               + self.server_log()[-3000:])
        return r

    def init(self):
        pwfile = os.path.join(self.dir, "admin.password")
        with open(pwfile, "w") as f:
            f.write(self.admin_password + "\n")
        os.chmod(pwfile, 0o600)
        os.chown(pwfile, self.account.pw_uid, self.account.pw_gid)
        r = subprocess.run(
            [os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
             "--pwfile", pwfile, "--auth-local=scram-sha-256",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"],
            capture_output=True, text=True, cwd=self.dir, env=self.env(),
            timeout=120, **as_user(self.account))
        os.unlink(pwfile)
        if r.returncode != 0:
            raise RuntimeError("initdb: " + r.stdout + r.stderr)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"""
# mod_hrflow's fleet tests
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = ''
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
shared_buffers = 32MB
log_min_messages = warning
log_line_prefix = '%m [%p] %a '
""")

    def start(self):
        self.ctl("-l", self.logfile, "-w", "-t", "60", "start")

    def stop(self, mode="fast"):
        """pg_ctl stop -m MODE (fast, immediate); nothing if not running."""
        if self.pid():
            self.ctl("-m", mode, "-w", "-t", "60", "stop", check=False)
        wait_until(lambda: not self.pid(), timeout=30)

    def pid(self):
        """The postmaster's pid, when it runs."""
        try:
            pid = int(open(os.path.join(self.data,
                                        "postmaster.pid")).readline())
        except (OSError, ValueError):
            return None
        return None if gone(pid) else pid

    def children(self, pid):
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                              text=True).stdout.split()
        return [int(k) for k in kids]

    def kill9(self):
        """kill -9 of the postmaster, as a crash would; its backends notice
        and exit on their own, and the next start recovers from the WAL."""
        pid = self.pid()
        assert pid, "PostgreSQL is not running"
        kids = self.children(pid)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: gone(pid), timeout=10)
        # The shared memory stays in use until the last backend is gone.
        for kid in kids:
            if not wait_until(lambda: gone(kid), timeout=10):
                os.kill(kid, signal.SIGKILL)
                wait_until(lambda: gone(kid), timeout=5)
        # Where nothing reaps orphans (containers) the postmaster stays a
        # zombie, which the next start would take for a live server.
        if os.path.exists(f"/proc/{pid}"):
            os.unlink(os.path.join(self.data, "postmaster.pid"))

    def restart(self):
        """Starts it again after stop() or kill9()."""
        self.start()

    def server_log(self):
        try:
            return open(self.logfile, errors="replace").read()
        except OSError:
            return ""

    # -- SQL -------------------------------------------------------------------
    def sql(self, text, database=None, check=True):
        """psql -c TEXT as the superuser over TCP: its rows, fields
        separated by '|', or with check=False the CompletedProcess."""
        env = dict(self.env(), PGPASSWORD=self.admin_password,
                   PGCONNECT_TIMEOUT="5")
        r = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database or self.database, "-c", text],
            capture_output=True, text=True, env=env, timeout=60)
        if not check:
            return r
        assert r.returncode == 0, f"psql: {text}\n{r.stderr}"
        return r.stdout

    def psql_session(self):
        """A psql reading SQL from its standard input, for transactions a
        test holds open (write to .stdin, flush)."""
        env = dict(self.env(), PGPASSWORD=self.admin_password)
        return subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", self.database], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)

    def create_role(self):
        self.sql(f"CREATE ROLE {self.user} LOGIN PASSWORD "
                 f"'{self.password}'", database="postgres")
        self.sql(f"CREATE DATABASE {self.database} OWNER {self.user}",
                 database="postgres")

    def hrflowctl(self, *args, timeout=60):
        """hrflowctl with the receivers' password (libpq's PGPASSWORD)."""
        env = dict(self.env(), PGPASSWORD=self.password)
        return subprocess.run([HRFLOWCTL, *args], capture_output=True,
                              text=True, env=env, timeout=timeout)

    def init_schema(self):
        r = self.hrflowctl("init", self.url)
        if r.returncode != 0 and ("usage" in r.stderr.lower()
                                  or "unknown" in r.stderr.lower()):
            pytest.skip("hrflowctl init URL is not built yet: "
                        + r.stderr.strip()[:200])
        assert r.returncode == 0, r.stdout + r.stderr

    def table(self, what="events"):
        return f"{self.name}_{what}"

    def clear(self):
        """Every event gone, so that a test starts from an empty queue."""
        self.sql(f"DELETE FROM {self.table()}", check=False)


RUNNING = set()             # servers to stop should the session be cut short


@atexit.register
def _stop_leftovers():
    for server in list(RUNNING):
        server.stop("immediate")


def start_postgres(scratch, name):
    """A running server with the role, the database and the schema."""
    if not PG_BIN:
        pytest.skip("PostgreSQL's server programs are not installed")
    if not os.access(HRFLOWCTL, os.X_OK):
        pytest.skip("hrflowctl is not built")
    server = Postgres(scratch, name)
    server.init()
    RUNNING.add(server)
    try:
        server.start()
        server.create_role()
        server.init_schema()
    except BaseException:
        stop_postgres(server)
        raise
    return server


def stop_postgres(server):
    server.stop("fast")
    if server.pid():
        server.stop("immediate")
    RUNNING.discard(server)


# ---- hrflow-worker processes ----------------------------------------------

class Worker:
    """One `hrflow-worker --config FILE`, as the server's user (www-data
    as root, as the spool tests' dispatcher runs), its standard error in
    ROOT/worker.log."""

    def __init__(self, scratch, name, pg, handlers, concurrency=4, retry=2,
                 retry_delay=1, extra=""):
        make_dir(os.path.join(scratch, "workers"))
        self.root = make_dir(os.path.join(scratch, "workers", name))
        self.name = name
        self.config = os.path.join(self.root, "worker.conf")
        self.logfile = os.path.join(self.root, "worker.log")
        # A worker of an earlier test had this name: its log was checked.
        if os.path.exists(self.logfile):
            os.unlink(self.logfile)
        lines = [f"HrflowQueue {pg.url}",
                 f"HrflowQueuePasswordFile {pg.password_file}",
                 f"HrflowQueueName {pg.name}",
                 f"HrflowConcurrency {concurrency}",
                 f"HrflowRetry {retry}",
                 f"HrflowRetryDelay {retry_delay}"]
        lines += [f"HrflowHandler {h}" for h in handlers]
        write_private(self.config, "# generated for the fleet tests\n"
                      + "\n".join(lines) + "\n" + extra)
        self.proc = None
        self.log_seen = {}

    def start(self):
        WATCHED[self.root] = self      # its log is checked after each test
        user = run_user()[0]
        account = pwd.getpwnam(user)
        log = open(self.logfile, "ab")
        if os.geteuid() == 0:
            os.chown(self.logfile, account.pw_uid, account.pw_gid)
        self.proc = subprocess.Popen(
            [reachable_worker(), "--config", self.config],
            stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, cwd=self.root,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            start_new_session=True, **as_user(account))
        log.close()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """TERM, then KILL: the worker finishes or hands back its events."""
        if not self.alive():
            return
        try:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except OSError:
            pass

    def kill(self):
        """kill -9: what a crashed host looks like to the others."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self):
        try:
            return open(self.logfile, errors="replace").read()
        except OSError:
            return ""

    def new_log_lines(self, name):
        """Lines added since the last call, for conftest's log check of
        every test (as error.log for Apache); the worker has no access
        log."""
        if name != "error.log":
            return []
        return lines_added(self.logfile, self.log_seen, name)


_reachable = {}


def reachable_worker():
    """The built hrflow-worker, copied once into a folder the server's user
    can reach: the build tree may sit in a checkout only root can enter
    (a `mktemp -d`), where www-data cannot run it."""
    if "path" not in _reachable:
        d = tempfile.mkdtemp(prefix="hrflow-worker-bin-", dir=TEST_TMP)
        os.chmod(d, 0o755)
        atexit.register(shutil.rmtree, d, True)
        path = os.path.join(d, "hrflow-worker")
        shutil.copyfile(WORKER, path)
        os.chmod(path, 0o755)
        _reachable["path"] = path
    return _reachable["path"]


def worker_built():
    if not os.access(WORKER, os.X_OK):
        pytest.skip("hrflow-worker is not built")


# ---- receivers: Apache in direct mode, sharing one database ----------------

def fleet_endpoints(scratch, out):
    """Each endpoint's path, its directives and its handler (as both the
    receivers and the workers name it)."""
    h = f"{scratch}/handlers"
    return {
        "/parity": (["HrflowSecret " + SECRETS[0]], f"{h}/record.sh {out}"),
        "/fleet": (["HrflowSignature optional", "HrflowTimeout 5"],
                   f"{h}/fleet.sh {out} 0.3"),
        "/slow": (["HrflowSignature optional", "HrflowTimeout 5"],
                  f"{h}/ooo.sh {out} 1.5"),
        "/count": (["HrflowSignature optional", "HrflowTimeout 3"],
                   f"{h}/count.sh {out}"),
        # The same program with other arguments.
        "/count-too": (["HrflowSignature optional", "HrflowTimeout 3"],
                       f"{h}/count.sh {out}/too"),
        "/flaky": (["HrflowSignature optional"], f"{h}/flaky.sh {out}"),
        "/broken": (["HrflowSignature optional"], f"{h}/broken.sh {out}"),
        # Short leases: the event's timeout + the kill grace + a margin.
        "/crash": (["HrflowSignature optional", "HrflowTimeout 2"],
                   f"{h}/crash.sh {out} 0.1 20"),
        "/freeze": (["HrflowSignature optional", "HrflowTimeout 2"],
                    f"{h}/freeze.sh {out} 1.5 1"),
    }


def handler_lines(scratch, out, paths=None):
    """The workers' HrflowHandler lines for these endpoints (default all)."""
    eps = fleet_endpoints(scratch, out)
    return sorted({f"* {eps[p][1]}" for p in (paths or eps)})


def receiver_config(scratch, pg, out, spool=None):
    text = (f"HrflowQueue {pg.url}\n"
            f"HrflowQueuePasswordFile {pg.password_file}\n"
            f"HrflowQueueName {pg.name}\n"
            "HrflowQueueTimeout 2\n"
            "HrflowWorker off\n")
    if spool:
        text += f"HrflowSpool {spool}\nHrflowRetryDelay 1\n"
    for path, (directives, handler) in fleet_endpoints(scratch, out).items():
        body = "".join(f"    {x}\n" for x in directives)
        text += (f"<Location {path}>\n    SetHandler hrflow-webhook\n{body}"
                 f"    HrflowHandler * {handler}\n</Location>\n")
    return text


class Fleet:
    """PostgreSQL, two receivers (a, b) and the workers a test starts."""

    def __init__(self, scratch, name):
        self.scratch = scratch
        self.out = make_dir(os.path.join(scratch, f"{name}-out"), 0o777)
        make_dir(os.path.join(self.out, "too"), 0o777)
        self.pg = start_postgres(scratch, name)
        self.receivers = []
        self.workers = []

    def receiver(self, name, spool=None):
        server = Httpd(name, self.scratch)
        server.spool = spool
        server.write_config(receiver_config(self.scratch, self.pg, self.out,
                                            spool))
        server.start()
        self.receivers.append(server)
        return server

    def worker(self, name, paths=None, concurrency=4, start=True, **kw):
        """A worker for these endpoints' handlers (default all)."""
        w = Worker(self.scratch, name, self.pg,
                   handler_lines(self.scratch, self.out, paths),
                   concurrency=concurrency, **kw)
        self.workers.append(w)
        return w.start() if start else w

    def stop_workers(self):
        for w in self.workers:
            w.stop()
        self.workers = []

    def reset(self):
        """Between tests: no worker, an empty queue and output folder."""
        self.stop_workers()
        if not self.pg.pid():
            self.pg.restart()
        self.pg.clear()
        shutil.rmtree(self.out)
        make_dir(self.out, 0o777)
        make_dir(os.path.join(self.out, "too"), 0o777)

    def close(self):
        self.stop_workers()
        for server in self.receivers:
            server.stop()
        stop_postgres(self.pg)


@pytest.fixture(scope="module")
def fleet_module(scratch, request):
    """One database and two receivers for a test module, always stopped."""
    worker_built()
    name = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    fleet = Fleet(scratch, name)
    try:
        fleet.a = fleet.receiver(name + "-a")
        fleet.b = fleet.receiver(name + "-b")
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def fleet(fleet_module):
    fleet_module.reset()
    yield fleet_module
    fleet_module.stop_workers()
