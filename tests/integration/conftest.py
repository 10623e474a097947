"""A real Apache httpd with the freshly built module, for the whole session.

Everything the server's user must reach at run time -- each server's root
(generated config, logs, mod_cgid's socket), copies of hrflow.cgi and of
the handlers, their output and the spools -- lives in one scratch folder of
mode 0755 outside the checkout (under $HRFLOW_TEST_TMP, default /tmp), so
that the suite passes from a checkout only root can enter.  Build artefacts
stay where they are: the module is loaded by root before the server drops
its privileges.

After every test the error log of every server started so far is read from
where the last check stopped: a crashed child, a sanitizer report, a secret,
or a line at level error or above that the test did not declare fails it.
A test declares the lines it expects with the expect_log marker or fixture.

HRFLOW_MPM picks the MPM (event, worker or prefork; default event).
HRFLOW_SANITIZE=1 starts httpd with the ASan and UBSan runtimes preloaded,
for a module and a CGI built with -fsanitize=address,undefined; their
reports go to $HRFLOW_SANITIZER_LOGS (or a folder of the scratch folder).
"""
import http.client
import os
import pwd
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(os.environ.get("HRFLOW_BUILD_DIR",
                                       os.path.join(HERE, "..", "..", "build")))
MODULE = os.environ.get("HRFLOW_MODULE", os.path.join(BUILD, "mod_hrflow.so"))
CGI = os.environ.get("HRFLOW_CGI", os.path.join(BUILD, "cgi", "hrflow.cgi"))
HTTPD = os.environ.get("HRFLOW_HTTPD", "/usr/sbin/apache2")
MODULES_DIR = os.environ.get("HRFLOW_HTTPD_MODULES", "/usr/lib/apache2/modules")
TEST_TMP = os.environ.get("HRFLOW_TEST_TMP", "/tmp")
MPM = os.environ.get("HRFLOW_MPM", "event")
SANITIZE = os.environ.get("HRFLOW_SANITIZE", "") not in ("", "0")
SECRETS = ("first-secret-Zq81", "second-secret-Yw42")
CRASH_MARKS = ("Segmentation fault", "exit signal", "AH00052", "double free",
               "Aborted", "AddressSanitizer", "runtime error:",
               "LeakSanitizer", "stack smashing", "malloc(): ",
               "free(): ", "corrupted size", "corrupted double")

# Without sanitizers, a runaway server process (a parser that never stops
# allocating) dies at this much address space instead of taking the
# machine's memory.  An idle event MPM child maps about 1.2 GB.
HTTPD_ADDRESS_SPACE = 3 << 30

MPM_TUNING = {
    "event": ["StartServers 1", "ServerLimit 2", "ThreadsPerChild 25",
              "MaxRequestWorkers 50", "MinSpareThreads 5",
              "MaxSpareThreads 50"],
    "worker": ["StartServers 1", "ServerLimit 2", "ThreadsPerChild 25",
               "MaxRequestWorkers 50", "MinSpareThreads 5",
               "MaxSpareThreads 50"],
    "prefork": ["StartServers 4", "MinSpareServers 4", "MaxSpareServers 16",
                "ServerLimit 50", "MaxRequestWorkers 50"],
}
if MPM not in MPM_TUNING:
    raise RuntimeError(f"HRFLOW_MPM={MPM}: one of {', '.join(MPM_TUNING)}")


def sanitizer_setup():
    """The runtimes to preload into httpd and the report folder, once."""
    if not SANITIZE:
        return "", None
    logs = os.environ.get("HRFLOW_SANITIZER_LOGS")
    if not logs:
        logs = tempfile.mkdtemp(prefix="hrflow-sanitizer-", dir=TEST_TMP)
    os.chmod(logs, 0o1777)      # the children write there as www-data
    # httpd is not instrumented: the ASan runtime must come first in its
    # link order, hence LD_PRELOAD.  Leak checks are off: httpd frees its
    # pools by exiting, and every child would report them.
    os.environ.setdefault(
        "ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0:"
        f"log_path={logs}/asan")
    os.environ.setdefault(
        "UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:"
        f"log_path={logs}/ubsan")
    preload = os.environ.get("HRFLOW_SANITIZER_PRELOAD") or " ".join(
        subprocess.run(["gcc", "-print-file-name=" + lib], capture_output=True,
                       text=True, check=True).stdout.strip()
        for lib in ("libasan.so", "libubsan.so"))
    return preload, logs


SANITIZER_PRELOAD, SANITIZER_LOGS = sanitizer_setup()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_user():
    if os.geteuid() != 0:
        u = pwd.getpwuid(os.geteuid())
        return u.pw_name, None
    return "www-data", "www-data"


def make_dir(path, mode=0o755):
    """A folder of exactly this mode, whatever the umask."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    return path


def base_config(root, port, scratch):
    user, group = run_user()
    lines = [
        f"ServerRoot {root}",
        "ServerName 127.0.0.1",
        f"Listen 127.0.0.1:{port}",
        f"PidFile {root}/httpd.pid",
        f"DefaultRuntimeDir {root}/run",
        f"ErrorLog {root}/error.log",
        "LogLevel warn hrflow:info",
        # As Debian's security.conf: httpd answers TRACE before any
        # <Location> applies, so no endpoint could refuse it.
        "TraceEnable off",
        'LogFormat "%>s %r %{HRFLOW_TYPE}e %{HRFLOW_EVENT_ID}e" hrflow',
        f"CustomLog {root}/access.log hrflow",
        f"LoadModule mpm_{MPM}_module {MODULES_DIR}/mod_mpm_{MPM}.so",
        f"LoadModule authz_core_module {MODULES_DIR}/mod_authz_core.so",
        f"LoadModule mime_module {MODULES_DIR}/mod_mime.so",
        f"LoadModule hrflow_module {MODULE}",
        "TypesConfig /etc/mime.types",
        f"DocumentRoot {scratch}/htdocs",
    ] + MPM_TUNING[MPM]
    if group:
        lines += [f"User {user}", f"Group {group}"]
    return "\n".join(lines) + "\n"


def httpd_env():
    env = dict(os.environ)
    if SANITIZER_PRELOAD:
        env["LD_PRELOAD"] = SANITIZER_PRELOAD
    return env


def limit_address_space():
    if not SANITIZE:     # ASan reserves terabytes of shadow memory
        resource.setrlimit(resource.RLIMIT_AS,
                           (HTTPD_ADDRESS_SPACE, HTTPD_ADDRESS_SPACE))


class Httpd:
    """One server: a generated config, started, stopped, its logs read.

    Its root is NAME under the scratch folder's servers/, where the
    server's user can reach it."""

    def __init__(self, name, scratch):
        self.root = os.path.join(scratch, "servers", name)
        self.scratch = scratch
        shutil.rmtree(self.root, ignore_errors=True)
        make_dir(os.path.join(scratch, "servers"))
        make_dir(self.root)
        make_dir(os.path.join(self.root, "run"))
        self.port = free_port()
        self.conf = os.path.join(self.root, "httpd.conf")
        self.log_seen = {}       # log file name -> bytes already checked

    def write_config(self, body):
        with open(self.conf, "w") as f:
            f.write(base_config(self.root, self.port, self.scratch) + body)

    def apachectl(self, *args):
        return subprocess.run([HTTPD, "-d", self.root, "-f", self.conf, *args],
                              capture_output=True, text=True, timeout=60,
                              env=httpd_env(), preexec_fn=limit_address_space)

    def start(self):
        WATCHED[self.root] = self
        r = self.apachectl("-k", "start")
        assert r.returncode == 0, r.stderr + self.error_log()
        pidfile = os.path.join(self.root, "httpd.pid")
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                if os.path.exists(pidfile):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("httpd did not come up:\n" + self.error_log())

    def stop(self):
        pidfile = os.path.join(self.root, "httpd.pid")
        if not os.path.exists(pidfile):
            return
        pid = int(open(pidfile).read())
        self.apachectl("-k", "stop")
        for _ in range(100):
            try:
                os.kill(pid, 0)
                time.sleep(0.1)
            except OSError:
                return

    def error_log(self, wait_for=None):
        """The error log; with wait_for, once it shows that text (a CGI's
        standard error reaches the log a moment after its answer)."""
        deadline = time.time() + 10
        while True:
            try:
                text = open(os.path.join(self.root, "error.log")).read()
            except OSError:
                text = ""
            if wait_for is None or wait_for in text or time.time() > deadline:
                return text
            time.sleep(0.05)

    def access_log(self):
        return open(os.path.join(self.root, "access.log")).read()

    def request(self, method, path, body=b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = headers or {}
        conn.request(method, path, body=body, headers=headers,
                     encode_chunked="Transfer-Encoding" in headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r, data

    def new_log_lines(self, name):
        """Whole lines added to a log since the last call."""
        return lines_added(os.path.join(self.root, name), self.log_seen,
                           name)


def lines_added(path, seen, name):
    """The whole lines of path past the offset seen[name], which moves past
    them (a line still being written waits for the next call)."""
    start = seen.get(name, 0)
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    end = data.rfind(b"\n") + 1
    seen[name] = start + end
    return data[:end].decode("utf-8", "replace").splitlines()


class Burst:
    """Threads sending unique events until stopped, each answer kept
    (answers: key -> HTTP status, None for no answer).  send(key, n) sends
    the event of key, n counting the thread's sends, and returns the
    status; a thread pauses 50 ms after an answer pause(status) names."""

    def __init__(self, send, threads, pause=lambda status: status is None):
        self.send = send
        self.pause = pause
        self.answers = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,))
                        for i in range(threads)]

    def run(self, t):
        n = 0
        while not self.stop.is_set():
            key = f"burst-{t}-{n}"
            try:
                status = self.send(key, n)
            except OSError:
                status = None
            n += 1
            with self.lock:
                self.answers[key] = status
            if self.pause(status):
                time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def accepted(self):
        return {k for k, s in self.answers.items() if s == 202}


# ---- the log check after every test -----------------------------------------

WATCHED = {}                    # root -> Httpd, every server started
SECRET_VALUES = set(SECRETS)    # never in a log
SANITIZER_SEEN = set()          # report files already blamed on a test
BAD_LEVELS = ("emerg", "alert", "crit", "error")
APACHE_LINE = re.compile(r"^\[[^\]]*\] \[[\w.-]*:(\w+)\] ")
# hrflow.cgi's standard error, and hrflow-worker's (the fleet tests).
CGI_LINE = re.compile(r"^hrflow(?:\.cgi|-worker\[\d+\]): \[(\w+)\] ")


def register_secret(value):
    """A secret of a test's own: it must never reach a log either."""
    SECRET_VALUES.add(value)
    return value


def line_level(line):
    """Apache's level of a log line, the CGI's or the worker's for its
    standard error, and "raw" for anything else written to the log (a
    child's stray output)."""
    m = APACHE_LINE.match(line) or CGI_LINE.match(line)
    return m.group(1) if m else "raw"


def line_problem(line, allowed):
    """Why this log line fails a test that allows these regexes, or None."""
    for secret in SECRET_VALUES:
        if secret in line:
            return "a secret in the log"
    if any(re.search(pattern, line) for pattern in allowed):
        return None
    if any(mark in line for mark in CRASH_MARKS):
        return "a crash or sanitizer report"
    if line_level(line) in BAD_LEVELS + ("raw",):
        return "an unexpected error line"
    return None


def sanitizer_reports():
    """Sanitizer report files written since the last call."""
    if not SANITIZER_LOGS or not os.path.isdir(SANITIZER_LOGS):
        return []
    found = []
    for name in sorted(os.listdir(SANITIZER_LOGS)):
        if name in SANITIZER_SEEN:
            continue
        SANITIZER_SEEN.add(name)
        with open(os.path.join(SANITIZER_LOGS, name), errors="replace") as f:
            found.append(f"{name}:\n" + "".join(f.readlines()[:25]))
    return found


def log_problems(allowed):
    """Every problem in what the servers logged since the last check."""
    problems = []
    for server in list(WATCHED.values()):
        for line in server.new_log_lines("error.log"):
            why = line_problem(line, allowed)
            if why:
                problems.append(f"{server.root}/error.log: {why}:\n  {line}")
        for line in server.new_log_lines("access.log"):
            if any(secret in line for secret in SECRET_VALUES):
                problems.append(f"{server.root}/access.log: a secret:\n  {line}")
    problems += ["sanitizer report " + r for r in sanitizer_reports()]
    return problems


def allowed_lines(item):
    allowed = []
    for mark in item.iter_markers("expect_log"):
        allowed += mark.args
    return allowed + getattr(item, "hrflow_expected", [])


def pytest_sessionfinish(session):
    if SANITIZER_LOGS and not os.environ.get("HRFLOW_SANITIZER_LOGS"):
        try:
            os.rmdir(SANITIZER_LOGS)    # made here, and empty: no report
        except OSError:
            print(f"\nsanitizer reports kept in {SANITIZER_LOGS}")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "expect_log(regex, ...): log lines at level error or above "
        "(or crash marks) that this test produces on purpose")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.hrflow_call_passed = report.passed and not hasattr(report,
                                                                "wasxfail")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    outcome = yield
    problems = log_problems(allowed_lines(item))
    if problems and outcome.excinfo is None:
        pytest.fail("the error log after this test:\n" + "\n".join(problems),
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """What the test's fixtures logged while stopping its servers."""
    yield
    if not hasattr(item, "hrflow_call_passed"):
        return              # never ran: what was logged is the next test's
    problems = log_problems(allowed_lines(item))
    if problems and item.hrflow_call_passed:
        pytest.fail("the error log after this test's teardown:\n"
                    + "\n".join(problems), pytrace=False)


@pytest.fixture
def expect_log(request):
    """expect_log(regex, ...): these log lines are this test's doing."""
    def expect(*patterns):
        request.node.hrflow_expected = (
            getattr(request.node, "hrflow_expected", []) + list(patterns))
    return expect


# ---- the scratch folder and the endpoints -----------------------------------

def copy_tree(src, dst):
    """Files the server's user runs or reads, with modes it can use."""
    make_dir(dst)
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if os.path.isdir(s):
            copy_tree(s, d)
        else:
            shutil.copyfile(s, d)
            os.chmod(d, 0o755 if os.access(s, os.X_OK) else 0o644)


@pytest.fixture(scope="session")
def scratch():
    d = tempfile.mkdtemp(prefix="hrflow-it-", dir=TEST_TMP)
    os.chmod(d, 0o755)
    copy_tree(os.path.join(HERE, "handlers"), os.path.join(d, "handlers"))
    make_dir(os.path.join(d, "htdocs"))
    with open(os.path.join(d, "htdocs", "static.txt"), "w") as f:
        f.write("ok\n")
    os.chmod(os.path.join(d, "htdocs", "static.txt"), 0o644)
    for sub in ("out", "state"):
        make_dir(os.path.join(d, sub), 0o777)
    yield d
    if os.environ.get("HRFLOW_KEEP_SCRATCH"):
        print(f"\nscratch folder kept: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


def endpoint_directives(scratch):
    """Each endpoint's path and its directives, for either front end."""
    h = f"{scratch}/handlers"
    out = f"{scratch}/out"
    s1, s2 = SECRETS
    record = f"HrflowHandler * {h}/record.sh {out}"
    return {
        "/hook": [f"HrflowSecret {s1}", f"HrflowSecret {s2}", record],
        "/custom": [f"HrflowSecret {s1}",
                    "HrflowSignatureHeader X-Hook-Signature", record],
        "/optional": [f"HrflowSecret {s1}", "HrflowSignature optional",
                      record],
        "/jobs-only": ["HrflowSignature optional",
                       f"HrflowHandler job.* {h}/record.sh {out}"],
        "/fail": ["HrflowSignature optional",
                  f"HrflowHandler profile.parsing.success {h}/record.sh {out}",
                  f"HrflowHandler *.error {h}/fail.sh"],
        "/slow": ["HrflowSignature optional", "HrflowTimeout 1",
                  f"HrflowHandler * {h}/slow.sh {out}"],
        "/small": ["HrflowSignature optional", "HrflowMaxBody 300",
                   "HrflowMaxEvents 2", record],
        "/noread": ["HrflowSignature optional", "HrflowHandler * /bin/true"],
    }


def module_endpoints(scratch):
    """<Location> sections served by mod_hrflow."""
    text = ""
    for path, lines in endpoint_directives(scratch).items():
        body = "".join(f"    {x}\n" for x in lines)
        text += (f"<Location {path}>\n    SetHandler hrflow-webhook\n"
                 f"{body}</Location>\n")
    return text


def install_cgi(scratch):
    """hrflow.cgi copied where the server's user reaches it."""
    d = make_dir(os.path.join(scratch, "cgi"))
    shutil.copyfile(CGI, os.path.join(d, "hrflow.cgi"))
    os.chmod(os.path.join(d, "hrflow.cgi"), 0o755)
    return d


def write_private(path, text):
    """A file only the server's user may read: configs with secrets."""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(run_user()[0])
        os.chown(path, pw.pw_uid, pw.pw_gid)


def cgi_endpoints(scratch):
    """The same endpoints, each a ScriptAlias to hrflow.cgi with its own
    config file named by HRFLOW_CONFIG."""
    d = install_cgi(scratch)
    text = "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                   for m in ("cgid", "alias", "env"))
    if SANITIZE:        # the CGI is built with the sanitizers too
        text += "PassEnv ASAN_OPTIONS UBSAN_OPTIONS\n"
    for path, lines in endpoint_directives(scratch).items():
        conf = os.path.join(d, path.strip("/") + ".conf")
        write_private(conf, "# generated for the integration tests\n"
                      + "\n".join(lines) + "\n")
        text += (f"ScriptAlias {path} {d}/hrflow.cgi\n"
                 f"<Location {path}>\n    SetEnv HRFLOW_CONFIG {conf}\n"
                 f"</Location>\n")
    return text


@pytest.fixture(scope="session", params=["module", "cgi"])
def httpd(request, scratch):
    """One server per front end: every test that uses it runs against the
    module and against hrflow.cgi under mod_cgid."""
    server = Httpd("integration-" + request.param, scratch)
    server.front = request.param
    # Room for a signed PAYLOAD of 100 KB in a header (the hostile suite).
    server.write_config("LimitRequestFieldSize 131072\n"
                        + (module_endpoints(scratch)
                           if request.param == "module"
                           else cgi_endpoints(scratch)))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def out(scratch):
    """The handlers' output folder, emptied before each test."""
    d = os.path.join(scratch, "out")
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    return d


def records(out_dir):
    """Each handler run as {"env": {...}, "stdin": bytes}, in run order."""
    runs = []
    order = os.path.join(out_dir, "order.log")
    if not os.path.exists(order):
        return runs
    for line in open(order).read().splitlines():
        delivery = line.split()[-1]
        raw = open(os.path.join(out_dir, delivery + ".env"), "rb").read()
        env = dict(item.decode().split("=", 1)
                   for item in raw.split(b"\0") if item)
        stdin = open(os.path.join(out_dir, delivery + ".json"), "rb").read()
        cwd = open(os.path.join(out_dir, delivery + ".cwd")).read().strip()
        runs.append({"env": env, "stdin": stdin, "cwd": cwd})
    return runs


# ---- helpers the durable-mode tests share ----------------------------------

def wait_until(check, timeout=30, step=0.1):
    """check()'s first true value within timeout seconds, else its last."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return check()


def lines(path):
    try:
        return open(path).read().splitlines()
    except OSError:
        return []


def gone(pid):
    """Not running (a zombie nobody reaps counts as gone)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] \
            == "Z"
    except OSError:
        return True


def in_state(server, state):
    """The event files in one of server.spool's state folders, sorted."""
    d = os.path.join(server.spool, state)
    return sorted(x for x in os.listdir(d) if x.endswith(".json"))


def spool_empty(server):
    """Nothing waiting, running or to be retried."""
    return not any(in_state(server, s) for s in ("new", "run", "retry"))
