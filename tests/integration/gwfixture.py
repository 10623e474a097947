"""Real applications behind gateway mode (SPEC section 9, HrflowVerify on).

Four content handlers, each an echo of what it received, so that a test
sees exactly what the application got (body bytes, Content-Type,
Content-Length, Transfer-Encoding, the HRFLOW_* variables) and whether it
ran at all:

- php-fpm (Debian's php-fpm8.x) through mod_proxy_fcgi, on a unix socket
  in the scratch folder; as root the master runs as root and its pool as
  www-data, as Debian runs it.  echo.php answers JSON and appends a line to
  a record file.
- a threaded HTTP server of this process on 127.0.0.1 behind mod_proxy_http.
  It reads Content-Length and chunked bodies itself (a chunked body is
  recorded as such), keeps every request in memory and answers JSON.  The
  variables reach it as request headers (X-Hrflow-Var-NAME, set with
  mod_headers' `expr=%{reqenv:HRFLOW_NAME}`), and the README's recipe
  `RequestHeader set Hrflow-Event-Id "expr=%{reqenv:HRFLOW_EVENT_ID}"`.
- a CGI (python3) under mod_cgid, which reads its standard input to the end.
- a static file (the core's default handler).

Each application is reachable under /KIND/CONF/, KIND one of KINDS and CONF
one of CONFS: the gateway's directives of that section (CONF "plain" has no
gateway: the application alone).  /KIND/rewrite/, /KIND/rewrite-hook/ and
/KIND/rewrite-small/ rewrite (mod_rewrite, an internal redirect) to
/KIND/plain/, /KIND/hook/ and /KIND/small/.
"""
import atexit
import base64
import glob
import http.server
import json
import os
import signal
import socket
import subprocess
import threading

import pytest

from conftest import MODULES_DIR, SECRETS, Httpd, make_dir, wait_until

KINDS = ("php", "backend", "cgi")
ALL_KINDS = KINDS + ("static",)
SMALL = 600                         # HrflowMaxBody of CONF "small"
LIMITED = 500                       # LimitRequestBody of CONF "limited"
SCRIPT = {"php": "echo.php", "backend": "echo", "cgi": "echo.cgi",
          "static": "file.txt"}

# Variables the proxied backend receives as headers: those the tests look
# at (mod_proxy_http passes headers, not the environment).
FORWARDED = ("HRFLOW_TYPE", "HRFLOW_ORIGIN", "HRFLOW_MESSAGE",
             "HRFLOW_PROFILE_KEY", "HRFLOW_PROFILE_SOURCE_KEY",
             "HRFLOW_JOB_KEY", "HRFLOW_JOB_BOARD_KEY", "HRFLOW_TAGS_1_NAME",
             "HRFLOW_SCORE", "HRFLOW_OK",
             "HRFLOW_EVENT_OBJECT", "HRFLOW_EVENT_ACTION",
             "HRFLOW_EVENT_STATUS", "HRFLOW_EVENT_ID", "HRFLOW_DELIVERY_ID",
             "HRFLOW_EVENT_INDEX", "HRFLOW_EVENT_COUNT", "HRFLOW_SIGNATURE",
             "HRFLOW_ATTEMPT")
VAR_HEADER = "X-Hrflow-Var-"


def var_header(name):
    """HRFLOW_EVENT_ID -> X-Hrflow-Var-Event-Id."""
    return VAR_HEADER + "-".join(
        p.capitalize() for p in name[len("HRFLOW_"):].split("_"))


def header_var(header):
    return "HRFLOW_" + header[len(VAR_HEADER):].upper().replace("-", "_")


def confs(scratch):
    """Each gateway section's directives, by CONF name."""
    s1, s2 = SECRETS
    secret_file = secret_file_path(scratch)
    return {
        "plain": None,
        "hook": [f"HrflowSecret {s1}", f"HrflowSecret {s2}"],
        "optional": [f"HrflowSecret {s1}", "HrflowSignature optional"],
        "custom": [f"HrflowSecret {s1}",
                   "HrflowSignatureHeader X-Hook-Signature"],
        "small": [f"HrflowSecret {s1}", f"HrflowMaxBody {SMALL}",
                  "HrflowMaxEvents 2"],
        "secretfile": [f"HrflowSecretFile {secret_file}"],
        "off": ["HrflowSignature off"],
        "limited": [f"HrflowSecret {s1}", f"LimitRequestBody {LIMITED}"],
        # Access control refuses before the gateway reads anything.
        "denied": [f"HrflowSecret {s1}", "Require all denied"],
        "rewrite": [f"HrflowSecret {s1}"],
        "rewrite-hook": [f"HrflowSecret {s1}"],
        "rewrite-small": [f"HrflowSecret {s1}"],
    }


def secret_file_path(scratch):
    return os.path.join(scratch, "gateway-app", "hrflow.secret")


def php_fpm_binary():
    if os.environ.get("HRFLOW_PHP_FPM"):
        return os.environ["HRFLOW_PHP_FPM"]
    found = sorted(glob.glob("/usr/sbin/php-fpm*"))
    return found[-1] if found else None


def chown_to_server_user(path):
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("www-data")
        os.chown(path, pw.pw_uid, pw.pw_gid)


# ---- the applications' files ------------------------------------------------

ECHO_PHP = r"""<?php
$input = file_get_contents('php://input');
$vars = [];
foreach ($_SERVER as $k => $v) {
    if (strncmp($k, 'HRFLOW_', 7) === 0) {
        $vars[$k] = $v;
    }
}
file_put_contents('@RECORD@', json_encode([
    'app' => 'php', 'uri' => $_SERVER['REQUEST_URI'],
    'length' => strlen($input)]) . "\n", FILE_APPEND | LOCK_EX);
header('Content-Type: application/json');
echo json_encode([
    'app' => 'php',
    'method' => $_SERVER['REQUEST_METHOD'],
    'uri' => $_SERVER['REQUEST_URI'],
    'script' => $_SERVER['SCRIPT_NAME'] ?? null,
    'body' => base64_encode($input),
    'content_type' => $_SERVER['CONTENT_TYPE'] ?? null,
    'content_length' => $_SERVER['CONTENT_LENGTH'] ?? null,
    'transfer_encoding' => $_SERVER['HTTP_TRANSFER_ENCODING'] ?? null,
    'vars' => (object)$vars,
    'post' => (object)$_POST,
    'env' => (object)$_SERVER,
]);
"""

ECHO_CGI = r"""#!/usr/bin/python3
import base64, json, os, sys
body = sys.stdin.buffer.read()
with open("@RECORD@", "a") as f:
    f.write(json.dumps({"app": "cgi", "uri": os.environ.get("REQUEST_URI"),
                        "length": len(body)}) + "\n")
env = dict(os.environ)
out = json.dumps({
    "app": "cgi",
    "method": env.get("REQUEST_METHOD"),
    "uri": env.get("REQUEST_URI"),
    "script": env.get("SCRIPT_NAME"),
    "body": base64.b64encode(body).decode(),
    "content_type": env.get("CONTENT_TYPE"),
    "content_length": env.get("CONTENT_LENGTH"),
    "transfer_encoding": env.get("HTTP_TRANSFER_ENCODING"),
    "vars": {k: v for k, v in env.items() if k.startswith("HRFLOW_")},
    "env": env,
}).encode()
sys.stdout.buffer.write(b"Content-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(out) + out)
"""


def write_file(path, text, mode):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class App:
    """The applications' folder: scripts, static file, record files."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.dir = make_dir(os.path.join(scratch, "gateway-app"))
        for sub in ("php", "phpdir", "cgi", "static", "rw"):
            make_dir(os.path.join(self.dir, sub))
        self.records = make_dir(os.path.join(self.dir, "records"), 0o777)
        for kind, text, mode in (("php", ECHO_PHP, 0o644),
                                 ("cgi", ECHO_CGI, 0o755)):
            record = os.path.join(self.records, kind + ".log")
            write_file(record, "", 0o666)
            chown_to_server_user(record)
            write_file(os.path.join(self.dir, kind, SCRIPT[kind]),
                       text.replace("@RECORD@", record), mode)
        write_file(os.path.join(self.dir, "phpdir", "index.php"),
                   open(os.path.join(self.dir, "php", SCRIPT["php"])).read(),
                   0o644)
        write_file(os.path.join(self.dir, "static", SCRIPT["static"]),
                   "static\n", 0o644)
        # Read by root at startup: the second secret only.
        write_file(secret_file_path(scratch), SECRETS[1] + "\n", 0o600)

    def record_lines(self, kind):
        with open(os.path.join(self.records, kind + ".log")) as f:
            return [json.loads(x) for x in f.read().splitlines()]


# ---- php-fpm ----------------------------------------------------------------

LEFTOVERS = set()


@atexit.register
def _stop_leftovers():
    for thing in list(LEFTOVERS):
        thing.stop()


class PhpFpm:
    """php-fpm -F -y CONF: one static pool of 2 children on a unix socket."""

    def __init__(self, scratch, name="gateway"):
        self.binary = php_fpm_binary()
        self.dir = make_dir(os.path.join(scratch, "php-fpm-" + name))
        self.socket = os.path.join(self.dir, "fpm.sock")
        self.conf = os.path.join(self.dir, "php-fpm.conf")
        self.log = os.path.join(self.dir, "error.log")
        self.proc = None
        pool_user = []
        if os.geteuid() == 0:
            pool_user = ["user = www-data", "group = www-data",
                         "listen.owner = www-data", "listen.group = www-data"]
        write_file(self.conf, "\n".join([
            "[global]",
            f"pid = {self.dir}/fpm.pid",
            f"error_log = {self.log}",
            "log_level = notice",
            "daemonize = no",
            "[gateway]",
            *pool_user,
            f"listen = {self.socket}",
            "listen.mode = 0660",
            "pm = static",
            "pm.max_children = 2",
            "catch_workers_output = yes",
            "clear_env = yes",
            "php_admin_flag[log_errors] = on",
            "php_admin_flag[display_errors] = off",
            # A 1 MiB event and more fits in $_POST and php://input.
            "php_admin_value[post_max_size] = 8M",
            "php_admin_value[opcache.enable] = 0",
        ]) + "\n", 0o644)

    def installed(self):
        return bool(self.binary) and os.access(self.binary, os.X_OK)

    def start(self):
        if not self.installed():
            return self         # the php tests skip (Gateway.request)
        log = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-y", self.conf], stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, cwd=self.dir, start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        log.close()
        LEFTOVERS.add(self)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError("php-fpm exited:\n" + self.errors())
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                return True
            except OSError:
                return False
        if not wait_until(listening, timeout=20):
            self.stop()
            raise RuntimeError("php-fpm did not listen:\n" + self.errors())
        return self

    def stop(self):
        LEFTOVERS.discard(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def errors(self):
        text = ""
        for name in ("error.log", "stderr.log"):
            try:
                text += open(os.path.join(self.dir, name),
                             errors="replace").read()
            except OSError:
                pass
        return text


# ---- the echo backend for mod_proxy_http ------------------------------------

class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_chunked(self):
        body = b""
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            body += self.rfile.read(size)
            self.rfile.readline()           # the CRLF after the data
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass                            # trailers
        return body

    def echo(self):
        te = self.headers.get("Transfer-Encoding")
        chunked = te is not None and "chunked" in te.lower()
        if chunked:
            body = self.read_chunked()
        elif self.headers.get("Content-Length") is not None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        else:
            body = b""
        seen = {"app": "backend", "method": self.command, "uri": self.path,
                "script": self.path,
                "headers": list(self.headers.items()), "chunked": chunked,
                "body": base64.b64encode(body).decode()}
        self.server.backend.add(seen)
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = echo


class EchoBackend:
    """A threaded HTTP/1.1 server on 127.0.0.1: every request recorded."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      EchoHandler)
        self.server.daemon_threads = True
        self.server.backend = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)

    def add(self, seen):
        with self.lock:
            self.requests.append(seen)

    def start(self):
        self.thread.start()
        LEFTOVERS.add(self)
        return self

    def stop(self):
        LEFTOVERS.discard(self)
        self.server.shutdown()
        self.server.server_close()

    def record_lines(self):
        with self.lock:
            return list(self.requests)


# ---- Apache -----------------------------------------------------------------

def section(kind, conf, directives, app, fpm, backend):
    """The <Location> of one application under one gateway section."""
    prefix = f"/{kind}/{conf}/"
    inner = []
    outer = []
    if directives is not None:
        inner += ["HrflowVerify on"] + directives
    if conf.startswith("rewrite"):
        # The gateway's section rewrites to another URL of the application:
        # an internal redirect after the body was verified.
        target = {"rewrite": "plain", "rewrite-hook": "hook",
                  "rewrite-small": "small"}[conf]
        outer.append(f"Alias {prefix} {app.dir}/rw/")
        inner += ["RewriteEngine on",
                  f"RewriteRule ^ /{kind}/{target}/{SCRIPT[kind]} [L]"]
    elif kind == "php":
        outer.append(f"Alias {prefix} {app.dir}/php/")
        inner.append(f'SetHandler "proxy:unix:{fpm.socket}|fcgi://localhost"')
    elif kind == "backend":
        inner.append(f"ProxyPass http://127.0.0.1:{backend.port}{prefix}")
        # mod_proxy_http streams a body of known length with its
        # Content-Length only while no filter but the protocol's could
        # change it (r->input_filters == r->proto_input_filters); else it
        # spools it to learn its length, or with proxy-sendchunked sends it
        # chunked, which the backend sees.
        inner.append("SetEnv proxy-sendchunked 1")
        inner.append('RequestHeader set Hrflow-Event-Id '
                     '"expr=%{reqenv:HRFLOW_EVENT_ID}"')
        inner += [f'RequestHeader set {var_header(v)} "expr=%{{reqenv:{v}}}"'
                  for v in FORWARDED]
    elif kind == "cgi":
        outer.append(f"ScriptAlias {prefix} {app.dir}/cgi/")
    else:
        outer.append(f"Alias {prefix} {app.dir}/static/")
    body = "".join(f"    {x}\n" for x in inner)
    return "".join(x + "\n" for x in outer) + \
        f"<Location {prefix}>\n{body}</Location>\n"


def gateway_config(app, fpm, backend, verify=True):
    mods = ("proxy", "proxy_http", "proxy_fcgi", "cgid", "alias", "headers",
            "rewrite", "env", "dir")
    text = "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                   for m in mods)
    text += f"ScriptSock {app.dir}/cgid.sock\n"
    # An endpoint of the module itself, to compare the variables its
    # handlers get with what the gateway gives the application.
    s1, s2 = SECRETS
    text += ("<Location /endpoint>\n    SetHandler hrflow-webhook\n"
             f"    HrflowSecret {s1}\n    HrflowSecret {s2}\n"
             "    HrflowSignature optional\n"
             f"    HrflowHandler * {app.scratch}/handlers/record.sh "
             f"{app.scratch}/out\n</Location>\n")
    # Debian's php8.2-fpm.conf: *.php files go to php-fpm, whatever the
    # URL; a folder's index.php is found by mod_dir (a subrequest, then a
    # fast internal redirect).
    s1 = SECRETS[0]
    text += (f"Alias /php/index/ {app.dir}/phpdir/\n"
             f"<Directory {app.dir}/phpdir>\n"
             "    DirectoryIndex index.php\n"
             '    <FilesMatch ".+\\.php$">\n'
             f'        SetHandler "proxy:unix:{fpm.socket}|fcgi://localhost"\n'
             "    </FilesMatch>\n</Directory>\n"
             f"<Location /php/index/>\n    HrflowVerify on\n"
             f"    HrflowSecret {s1}\n</Location>\n")
    for kind in ALL_KINDS:
        for conf, directives in confs(app.scratch).items():
            text += section(kind, conf, directives if verify else None,
                            app, fpm, backend)
    return text


class Gateway:
    """The server and its applications, with what the tests ask of them."""

    def __init__(self, httpd, app, fpm, backend):
        self.httpd = httpd
        self.app = app
        self.fpm = fpm
        self.backend = backend

    def url(self, kind, conf):
        return f"/{kind}/{conf}/{SCRIPT[kind]}"

    def request(self, method, kind, conf, body=b"", headers=None):
        self.need(kind)
        return self.httpd.request(method, self.url(kind, conf), body, headers)

    def need(self, kind):
        if kind == "php" and not self.fpm.installed():
            pytest.skip("php-fpm is not installed (scripts/deps.sh test)")

    def runs(self, kind):
        """What the application recorded so far, oldest first."""
        self.need(kind)
        if kind == "backend":
            return self.backend.record_lines()
        if kind == "static":
            return []
        return self.app.record_lines(kind)


def seen(kind, data):
    """What an echo application received, from its JSON answer: body
    (bytes), content_type, content_length, transfer_encoding, vars (the
    HRFLOW_* it got), chunked (the backend: a chunked body arrived), and
    text (everything it answered)."""
    j = json.loads(data)
    assert j["app"] == kind, j
    out = {"body": base64.b64decode(j["body"]), "text": data.decode(),
           "uri": j["uri"], "script": j["script"], "method": j["method"]}
    if kind == "backend":
        headers = j["headers"]
        names = [k.lower() for k, _ in headers]
        h = {k.lower(): v for k, v in headers}
        out["headers"] = headers
        out["header_names"] = names
        out["content_type"] = h.get("content-type")
        out["content_length"] = h.get("content-length")
        out["transfer_encoding"] = h.get("transfer-encoding")
        out["chunked"] = j["chunked"]
        out["event_id_header"] = h.get("hrflow-event-id")
        out["vars"] = {header_var(k): v for k, v in headers
                       if k.lower().startswith(VAR_HEADER.lower()) and v}
    else:
        out["content_type"] = j["content_type"]
        out["content_length"] = j["content_length"]
        out["transfer_encoding"] = j["transfer_encoding"]
        out["chunked"] = False
        out["vars"] = j["vars"]
        out["env"] = j["env"]
        if kind == "php":
            out["post"] = j["post"]
    return out


@pytest.fixture(scope="module")
def gateway(scratch):
    """One Apache with every application behind every gateway section,
    php-fpm and the echo backend, for a whole test module."""
    app = App(scratch)
    fpm = PhpFpm(scratch).start()
    backend = EchoBackend().start()
    server = Httpd("gateway", scratch)
    try:
        server.write_config(gateway_config(app, fpm, backend))
        server.start()
        yield Gateway(server, app, fpm, backend)
    finally:
        server.stop()
        backend.stop()
        fpm.stop()
