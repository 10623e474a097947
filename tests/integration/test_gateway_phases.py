"""Gateway mode (HrflowVerify on) among httpd's other request phases:
access control before it, internal redirects, DirectoryIndex and
subrequests after it, an endpoint beside it, and a connection that goes on
after a verified request."""
import hashlib
import http.client
import json
import os
import socket
import subprocess

import pytest

import conftest
from conftest import Httpd, MODULES_DIR, SECRETS, make_dir
from hrflow_sign import body_signature

SECRET = SECRETS[0]
EVENT = (b'{"type":"profile.parsing.success","origin":"api",'
         b'"profile":{"key":"k-phases"}}')

# A CGI that says what it received: the body's SHA-256 and length, and
# every HRFLOW_* variable, and leaves a mark that it ran.
ECHO_CGI = """#!/usr/bin/python3
import hashlib, json, os, sys
body = sys.stdin.buffer.read()
with open(os.environ["ECHO_MARKS"], "a") as f:
    f.write(os.environ.get("SCRIPT_NAME", "?") + "\\n")
out = {"sha": hashlib.sha256(body).hexdigest(), "len": len(body),
       "content_length": os.environ.get("CONTENT_LENGTH"),
       "vars": {k: v for k, v in os.environ.items()
                if k.startswith("HRFLOW_")}}
sys.stdout.write("Content-Type: application/json\\n\\n" + json.dumps(out))
"""


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


@pytest.fixture(scope="module")
def server(scratch):
    s = Httpd("gateway-phases", scratch)
    app = make_dir(os.path.join(s.root, "app"))
    index = make_dir(os.path.join(app, "index"))
    rewrite = make_dir(os.path.join(s.root, "rewrite"))
    marks = os.path.join(s.root, "marks")
    write(marks, "", 0o666)
    for path in (os.path.join(app, "echo.cgi"),
                 os.path.join(index, "index.cgi")):
        write(path, ECHO_CGI, 0o755)
    write(os.path.join(s.root, "page.shtml"),
          'before <!--#include virtual="/app/echo.cgi" --> after\n')
    users = os.path.join(s.root, "users")
    subprocess.run(["htpasswd", "-bcB", users, "alice", "pw"], check=True,
                   capture_output=True)
    os.chmod(users, 0o644)
    mods = "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                   for m in ("cgid", "alias", "env", "rewrite", "dir",
                             "include", "auth_basic", "authn_core",
                             "authn_file", "authz_user"))
    s.write_config(mods + f"""
ScriptSock {s.root}/run/cgid.sock
SetEnv ECHO_MARKS {marks}
Alias /app/ {app}/
<Directory {app}>
    Options +ExecCGI
    AddHandler cgi-script .cgi
    DirectoryIndex index.cgi
</Directory>
<Location /app/>
    HrflowVerify on
    HrflowSecret {SECRET}
</Location>
<Location /small/>
    HrflowVerify on
    HrflowSecret {SECRET}
    LimitRequestBody 50
</Location>
Alias /small/ {app}/
<Location /denied/>
    HrflowVerify on
    HrflowSecret {SECRET}
    Require all denied
</Location>
Alias /denied/ {app}/
<Location /login/>
    HrflowVerify on
    HrflowSecret {SECRET}
    AuthType Basic
    AuthName hooks
    AuthBasicProvider file
    AuthUserFile {users}
    Require valid-user
</Location>
Alias /login/ {app}/
# A rewrite (in a <Directory>: an internal redirect, in the fixups) from
# the verified URL to the script, outside every gateway section, and a
# page that includes a gateway URL.
Alias /plain/ {app}/
<Location /rewrite/>
    HrflowVerify on
    HrflowSecret {SECRET}
</Location>
Alias /rewrite/ {rewrite}/
<Directory {rewrite}>
    RewriteEngine on
    RewriteRule ^hook$ /plain/echo.cgi [PT]
</Directory>
Alias /pages/ {s.root}/
<Directory {s.root}>
    Options +Includes
    AddOutputFilter INCLUDES .shtml
</Directory>
# An endpoint inside a gateway section checks its requests itself.
<Location /both/>
    HrflowVerify on
    HrflowSecret {SECRET}
</Location>
<Location /both/endpoint>
    SetHandler hrflow-webhook
    HrflowSecret {SECRET}
</Location>
""")
    s.start()
    s.marks = marks
    yield s
    s.stop()


def signed(body=EVENT, extra=None):
    h = {"Content-Type": "application/json",
         "HTTP-HRFLOW-SIGNATURE": body_signature(SECRET, body)}
    h.update(extra or {})
    return h


def ran(server):
    return open(server.marks).read().split()


@pytest.fixture
def marks(server):
    write(server.marks, "", 0o666)
    return server


def check_echo(data, body=EVENT):
    got = json.loads(data)
    assert got["sha"] == hashlib.sha256(body).hexdigest()
    assert got["content_length"] == str(len(body))
    assert got["vars"]["HRFLOW_TYPE"] == "profile.parsing.success"
    assert got["vars"]["HRFLOW_SIGNATURE"] == "verified"
    # The event's text, without the white space around it.
    assert (got["vars"]["HRFLOW_EVENT_ID"]
            == hashlib.sha256(body.strip()).hexdigest())
    return got


@pytest.mark.expect_log(r"AH01630: client denied by server configuration")
def test_access_control_refuses_before_the_body_is_read(marks):
    r, data = marks.request("POST", "/denied/echo.cgi", EVENT,
                            {"Content-Type": "application/json"})
    assert r.status == 403                 # not 401 missing_signature
    assert b"missing_signature" not in data
    assert ran(marks) == []


def test_login_and_signature_are_both_needed(marks):
    r, data = marks.request("POST", "/login/echo.cgi", EVENT, signed())
    assert r.status == 401 and r.getheader("WWW-Authenticate")
    assert b'"status"' not in data         # mod_auth_basic's refusal
    auth = {"Authorization": "Basic YWxpY2U6cHc="}       # alice:pw
    r, data = marks.request("POST", "/login/echo.cgi", EVENT,
                            {**auth, "Content-Type": "application/json"})
    assert r.status == 401
    assert json.loads(data)["error"] == "missing_signature"
    assert ran(marks) == []
    r, data = marks.request("POST", "/login/echo.cgi", EVENT, signed(
        extra=auth))
    assert r.status == 200, data
    check_echo(data)


def test_a_rewrite_out_of_the_section_keeps_body_and_variables(marks):
    r, data = marks.request("POST", "/rewrite/hook", EVENT, signed())
    assert r.status == 200, data
    check_echo(data)
    assert ran(marks) == ["/plain/echo.cgi"]
    r, data = marks.request("POST", "/rewrite/hook", EVENT,
                            signed(extra={"HTTP-HRFLOW-SIGNATURE": "00"}))
    assert r.status == 401
    assert ran(marks) == ["/plain/echo.cgi"]


def test_directory_index_reads_the_verified_body(marks):
    body = EVENT + b" " * 70000        # past the first reads of any handler
    r, data = marks.request("POST", "/app/index/", body, signed(body))
    assert r.status == 200, data
    check_echo(data, body)
    assert ran(marks) == ["/app/index/index.cgi"]


@pytest.mark.expect_log(r'unable to include "/app/echo.cgi".*returned 401')
def test_a_subrequest_of_an_unverified_request_is_refused(marks):
    r, data = marks.request("GET", "/pages/page.shtml")
    assert r.status == 200
    assert b"before" in data and b"after" in data
    assert b"sha" not in data              # the script's answer is not there
    assert ran(marks) == []
    assert "HF01006" in marks.error_log(wait_for="HF01006")


def test_an_endpoint_inside_a_gateway_section_checks_itself(server):
    r, data = server.request("POST", "/both/endpoint", EVENT, signed())
    assert r.status == 200, data
    assert json.loads(data) == {"status": "ok", "events": 1, "handled": 0,
                                "ignored": 1}
    r, data = server.request("POST", "/both/endpoint", EVENT,
                             {"Content-Type": "application/json"})
    assert r.status == 401


def raw_post(port, path, chunked_body):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/json\r\n"
                  f"HTTP-HRFLOW-SIGNATURE: {body_signature(SECRET, EVENT)}"
                  "\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                  + chunked_body)
        answer = b""
        while chunk := c.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def test_httpds_own_refusals_of_a_chunked_body_are_json(marks):
    """httpd answers these from its input filter, before the check has a
    body: a gateway section answers them as an endpoint, in JSON."""
    status, body = raw_post(marks.port, "/small/echo.cgi",
                            b"%x\r\n" % len(EVENT) + EVENT + b"\r\n0\r\n\r\n")
    assert status.endswith(b" 413 Request Entity Too Large")
    assert json.loads(body)["error"] == "body_too_large"
    status, body = raw_post(marks.port, "/app/echo.cgi", b"zz\r\n")
    assert status.endswith(b" 400 Bad Request")
    assert json.loads(body)["error"] == "unreadable_body"
    assert ran(marks) == []


def test_the_connection_goes_on_after_a_verified_request(marks):
    """The request's input is replaced, not the connection's: the next
    requests on the same connection are read from the socket."""
    conn = http.client.HTTPConnection("127.0.0.1", marks.port, timeout=30)
    bodies = [EVENT, EVENT + b" " * 20000, EVENT + b"\n"]
    for body in bodies:
        conn.request("POST", "/app/echo.cgi", body, signed(body))
        r = conn.getresponse()
        assert r.status == 200
        check_echo(r.read(), body)
    conn.request("POST", "/app/echo.cgi", EVENT, signed(
        extra={"HTTP-HRFLOW-SIGNATURE": "00"}))
    r = conn.getresponse()
    assert r.status == 401 and b"invalid_signature" in r.read()
    conn.request("POST", "/app/echo.cgi", EVENT, signed())
    r = conn.getresponse()
    assert r.status == 200
    check_echo(r.read())
    conn.close()
    assert len(ran(marks)) == 4


@pytest.fixture(scope="module")
def h2_server(scratch, server):
    if conftest.MPM == "prefork":
        pytest.skip("mod_http2 does not run under prefork")
    s = Httpd("gateway-h2", scratch)
    s.write_config(f"""LoadModule cgid_module {MODULES_DIR}/mod_cgid.so
LoadModule alias_module {MODULES_DIR}/mod_alias.so
LoadModule env_module {MODULES_DIR}/mod_env.so
LoadModule http2_module {MODULES_DIR}/mod_http2.so
Protocols h2c http/1.1
ScriptSock {s.root}/run/cgid.sock
SetEnv ECHO_MARKS {server.marks}
ScriptAlias /app/ {server.root}/app/
<Location /app/>
    HrflowVerify on
    HrflowSecret {SECRET}
</Location>
""")
    s.start()
    yield s
    s.stop()


def test_http2_requests_are_checked_and_replayed(h2_server, marks):
    def post(body, signature):
        r = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-m", "30",
             "-o", "-", "-w", "\n%{http_version} %{http_code}",
             "-H", "Content-Type: application/json",
             "-H", f"HTTP-HRFLOW-SIGNATURE: {signature}",
             "--data-binary", "@-",
             f"http://127.0.0.1:{h2_server.port}/app/echo.cgi"],
            input=body, capture_output=True, check=True)
        data, _, status = r.stdout.rpartition(b"\n")
        return status.decode(), data

    body = EVENT + b" " * 100000
    status, data = post(body, body_signature(SECRET, body))
    assert status == "2 200", data
    check_echo(data, body)
    status, data = post(body, "00")
    assert status == "2 401"
    assert json.loads(data)["error"] == "invalid_signature"
    assert ran(marks) == ["/app/echo.cgi"]
