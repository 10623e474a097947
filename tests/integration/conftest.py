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

    def error_log(self):
        try:
            return open(os.path.join(self.root, "error.log")).read()
        except OSError:
            return ""

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
    os.makedirs(os.path.join(d, "htdocs"))
    with open(os.path.join(d, "htdocs", "static.txt"), "w") as f:
        f.write("ok\n")
    for sub in ("out", "state"):
        os.makedirs(os.path.join(d, sub))
        os.chmod(os.path.join(d, sub), 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def endpoints(scratch):
    h = f"{scratch}/handlers"
    out = f"{scratch}/out"
    s1, s2 = SECRETS
    return f"""
<Location /hook>
    SetHandler hrflow-webhook
    HrflowSecret {s1}
    HrflowSecret {s2}
    HrflowHandler * {h}/record.sh {out}
</Location>
<Location /custom>
    SetHandler hrflow-webhook
    HrflowSecret {s1}
    HrflowSignatureHeader X-Hook-Signature
    HrflowHandler * {h}/record.sh {out}
</Location>
<Location /optional>
    SetHandler hrflow-webhook
    HrflowSecret {s1}
    HrflowSignature optional
    HrflowHandler * {h}/record.sh {out}
</Location>
<Location /jobs-only>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowHandler job.* {h}/record.sh {out}
</Location>
<Location /fail>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowHandler profile.parsing.success {h}/record.sh {out}
    HrflowHandler *.error {h}/fail.sh
</Location>
<Location /slow>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowTimeout 1
    HrflowHandler * {h}/slow.sh {out}
</Location>
<Location /small>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowMaxBody 300
    HrflowMaxEvents 2
    HrflowHandler * {h}/record.sh {out}
</Location>
"""


@pytest.fixture(scope="session")
def httpd(scratch):
    server = Httpd("integration", scratch)
    server.write_config(endpoints(scratch))
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
