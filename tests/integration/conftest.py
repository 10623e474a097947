"""A real Apache httpd with the freshly built module, for the whole session.

The configuration is generated under the build tree; handlers, their output
and the document root live in a world-readable scratch directory because the
server's children run as www-data when the tests run as root.
"""
import http.client
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(os.environ.get("HRFLOW_BUILD_DIR",
                                       os.path.join(HERE, "..", "..", "build")))
MODULE = os.environ.get("HRFLOW_MODULE", os.path.join(BUILD, "mod_hrflow.so"))
CGI = os.environ.get("HRFLOW_CGI", os.path.join(BUILD, "cgi", "hrflow.cgi"))
HTTPD = os.environ.get("HRFLOW_HTTPD", "/usr/sbin/apache2")
MODULES_DIR = os.environ.get("HRFLOW_HTTPD_MODULES", "/usr/lib/apache2/modules")
SECRETS = ("first-secret-Zq81", "second-secret-Yw42")
CRASH_MARKS = ("Segmentation fault", "exit signal", "AH00052", "double free",
               "Aborted", "AddressSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_user():
    if os.geteuid() != 0:
        u = pwd.getpwuid(os.geteuid())
        return u.pw_name, None
    return "www-data", "www-data"


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
        'LogFormat "%>s %r %{HRFLOW_TYPE}e %{HRFLOW_EVENT_ID}e" hrflow',
        f"CustomLog {root}/access.log hrflow",
        f"LoadModule mpm_event_module {MODULES_DIR}/mod_mpm_event.so",
        f"LoadModule authz_core_module {MODULES_DIR}/mod_authz_core.so",
        f"LoadModule mime_module {MODULES_DIR}/mod_mime.so",
        f"LoadModule hrflow_module {MODULE}",
        "TypesConfig /etc/mime.types",
        f"DocumentRoot {scratch}/htdocs",
        "StartServers 1", "ServerLimit 2", "ThreadsPerChild 25",
        "MaxRequestWorkers 50", "MinSpareThreads 5", "MaxSpareThreads 50",
    ]
    if group:
        lines += [f"User {user}", f"Group {group}"]
    return "\n".join(lines) + "\n"


class Httpd:
    """One server: a generated config, started, stopped, its logs read."""

    def __init__(self, name, scratch):
        self.root = os.path.join(BUILD, "tests", name)
        self.scratch = scratch
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(os.path.join(self.root, "run"))
        self.port = free_port()
        self.conf = os.path.join(self.root, "httpd.conf")

    def write_config(self, body):
        with open(self.conf, "w") as f:
            f.write(base_config(self.root, self.port, self.scratch) + body)

    def apachectl(self, *args):
        return subprocess.run([HTTPD, "-d", self.root, "-f", self.conf, *args],
                              capture_output=True, text=True, timeout=60)

    def start(self):
        r = self.apachectl("-k", "start")
        assert r.returncode == 0, r.stderr + self.error_log()
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
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


@pytest.fixture(scope="session")
def scratch():
    d = tempfile.mkdtemp(prefix="hrflow-it-")
    os.chmod(d, 0o755)
    shutil.copytree(os.path.join(HERE, "handlers"), os.path.join(d, "handlers"))
    # hrflow.cgi refuses handlers others could replace (a checkout made with
    # umask 002 is group-writable).
    for name in [""] + os.listdir(os.path.join(d, "handlers")):
        os.chmod(os.path.join(d, "handlers", name), 0o755)
    os.makedirs(os.path.join(d, "htdocs"))
    with open(os.path.join(d, "htdocs", "static.txt"), "w") as f:
        f.write("ok\n")
    for sub in ("out", "state"):
        os.makedirs(os.path.join(d, sub))
        os.chmod(os.path.join(d, sub), 0o777)
    yield d
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
    d = os.path.join(scratch, "cgi")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    shutil.copy(CGI, os.path.join(d, "hrflow.cgi"))
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
    server.write_config(module_endpoints(scratch) if request.param == "module"
                        else cgi_endpoints(scratch))
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
