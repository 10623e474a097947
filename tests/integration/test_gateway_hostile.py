"""Gateway mode (HrflowVerify on) as a hostile sender and an administrator
would try it: ModSecurity reading the body first, headers that announce a
huge body, a redirect into a section of stricter rules, a secret given by
an enclosing section."""
import hashlib
import json
import os
import socket
import time

import pytest

from conftest import Httpd, MODULES_DIR, SECRETS, make_dir
from hrflow_sign import body_signature, signed_value

SECRET = SECRETS[0]
EVENT = (b'{"type":"profile.parsing.success","origin":"api",'
         b'"profile":{"key":"k-review"}}')
EVIL = (b'{"type":"profile.parsing.success","origin":"api",'
        b'"profile":{"key":"ATTACKER-CHOSEN"}}')

ECHO_CGI = """#!/usr/bin/python3
import hashlib, json, os, sys
body = sys.stdin.buffer.read()
out = {"body": body.decode("latin1"),
       "content_length": os.environ.get("CONTENT_LENGTH"),
       "vars": {k: v for k, v in os.environ.items()
                if k.startswith("HRFLOW_")}}
sys.stdout.write("Content-Type: application/json\\n\\n" + json.dumps(out))
"""

# ModSecurity 2 (libapache2-mod-security2), with the libraries it needs,
# installed or unpacked (dpkg -x) under this root.
MODSEC_ROOT = os.environ.get("HRFLOW_MODSECURITY_ROOT", "/")
MODSEC = os.path.join(MODSEC_ROOT, "usr/lib/apache2/modules/mod_security2.so")
MODSEC_LIBS = [os.path.join(MODSEC_ROOT, "usr/lib/x86_64-linux-gnu", lib)
               for lib in ("liblua5.1.so.0", "libyajl.so.2")]


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def mods(*names):
    return "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                   for m in names)


def gateway_server(scratch, name, extra=""):
    s = Httpd(name, scratch)
    app = make_dir(os.path.join(s.root, "app"))
    opt = make_dir(os.path.join(s.root, "opt"))
    write(os.path.join(app, "echo.cgi"), ECHO_CGI, 0o755)
    s.write_config(mods("cgid", "alias", "rewrite") + f"""
ScriptSock {s.root}/run/cgid.sock
ScriptAlias /app/ {app}/
<Location /app/>
    HrflowVerify on
    HrflowSecret {SECRET}
</Location>
Alias /opt/ {opt}/
<Location /opt/>
    HrflowVerify on
    HrflowSignature optional
</Location>
<Directory {opt}>
    RewriteEngine on
    RewriteRule ^go$ /app/echo.cgi [PT]
</Directory>
""" + extra)
    return s


def test_configtest_takes_the_secret_of_an_enclosing_location(scratch):
    """A secret given once for /hooks/ applies to /hooks/php/ at run time
    (the sections merge): configtest must not refuse that."""
    s = Httpd("review-nested-secret", scratch)
    s.write_config(f"""
<Location /hooks/>
    HrflowSecret {SECRET}
</Location>
<Location /hooks/php/>
    HrflowVerify on
</Location>
""")
    r = s.apachectl("-t")
    assert r.returncode == 0, r.stderr


def test_a_redirect_into_a_required_section_is_checked_there(scratch):
    """/opt/ accepts unsigned requests; /app/ requires HrFlow's signature.
    An unsigned request rewritten from /opt/ into /app/ must not reach
    /app/'s application."""
    s = gateway_server(scratch, "review-redirect")
    s.start()
    try:
        r, data = s.request("POST", "/opt/go", EVENT,
                            {"Content-Type": "application/json"})
        assert r.status == 401, data
    finally:
        s.stop()


def vm_kb(root):
    """VmSize in kB of each of the server's processes, by pid."""
    sizes = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        if root.encode() not in cmd:
            continue
        for line in status.splitlines():
            if line.startswith("VmSize:"):
                sizes[pid] = int(line.split()[1])
    return sizes


def grown_kb(before, after):
    """The most any one process that was there before has grown."""
    return max([after[p] - before[p] for p in before if p in after] + [0])


@pytest.mark.expect_log(r"exit signal", r"Memory allocation failed")
def test_headers_alone_do_not_reserve_the_largest_body(scratch):
    """A sender that announces HrflowMaxBody bytes and sends none has sent
    nothing to hold: the server must not set that much memory aside for it
    (two such requests abort an event child under a 3 GiB address space).
    A process that aborted is not there after: the log says so."""
    s = gateway_server(scratch, "review-reserve", f"""
<Location /app/>
    HrflowMaxBody 1073741824
</Location>
""")
    s.start()
    socks = []
    try:
        time.sleep(1)               # every process the server starts
        before = vm_kb(s.root)
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            c.sendall(b"POST /app/echo.cgi HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 1073741824\r\n\r\n")
            socks.append(c)
        time.sleep(1.5)
        grown = grown_kb(before, vm_kb(s.root))
        log = s.error_log()
        assert "Memory allocation failed" not in log
        assert grown < 512 * 1024, f"{grown} kB more address space"
    finally:
        for c in socks:
            c.close()
        s.stop()


@pytest.mark.skipif(not os.path.exists(MODSEC),
                    reason="ModSecurity 2 is not there "
                    "(HRFLOW_MODSECURITY_ROOT)")
def test_modsecurity_reading_the_body_first_lets_no_other_body_through(
        scratch):
    """ModSecurity (SecRequestBodyAccess On, as its recommended config)
    reads the body in its own fixups hook, before the gateway's, and hands
    it to the handler again from an input filter of its own.  A captured
    SIG.PAYLOAD header with an attacker's body must still never reach the
    application as verified; a body-signed request must still pass."""
    data_dir = make_dir(os.path.join(scratch, "modsec"), 0o777)
    loads = "".join(f"LoadFile {lib}\n" for lib in MODSEC_LIBS
                    if os.path.exists(lib))
    s = gateway_server(scratch, "review-modsec", loads + mods("unique_id") + f"""
LoadModule security2_module {MODSEC}
SecRuleEngine On
SecRequestBodyAccess On
SecDataDir {data_dir}
SecTmpDir {data_dir}
SecAuditEngine Off
""")
    s.start()
    try:
        header = signed_value(SECRET, EVENT)
        r, data = s.request("POST", "/app/echo.cgi", EVIL, {
            "Content-Type": "application/json",
            "HTTP-HRFLOW-SIGNATURE": header})
        if r.status == 200:
            got = json.loads(data)
            assert got["body"] == EVENT.decode(), (
                "the application got a body the signature did not cover: "
                + got["body"])
        r, data = s.request("POST", "/app/echo.cgi", EVENT, {
            "Content-Type": "application/json",
            "HTTP-HRFLOW-SIGNATURE": body_signature(SECRET, EVENT)})
        assert r.status == 200, data
        assert (json.loads(data)["body"].encode()
                == EVENT), "a body-signed request is refused"
    finally:
        s.stop()
