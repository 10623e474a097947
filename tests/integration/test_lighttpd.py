"""hrflow.cgi under a second server: lighttpd's mod_cgi, on a free port
with its config in the scratch folder.  The CGI/1.1 contract is all it
relies on: a signed event runs its handler, and every refusal has the
status and JSON answer of SPEC section 5."""
import json
import os
import pwd
import shutil
import socket
import subprocess
import time

import pytest

from conftest import (CGI, CRASH_MARKS, SANITIZE, SECRETS, free_port,
                      make_dir, records, run_user, wait_until)
from hrflow_sign import body_signature, signed_value

LIGHTTPD = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
pytestmark = pytest.mark.skipif(not os.path.exists(LIGHTTPD),
                                reason="lighttpd is not installed "
                                "(Debian package lighttpd)")
EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-lighttpd"}}'


def give(path, mode, group=None):
    os.chmod(path, mode)
    if group and os.geteuid() == 0:
        os.chown(path, 0, pwd.getpwnam(run_user()[0]).pw_gid)


@pytest.fixture(scope="module")
def lighttpd(scratch):
    root = make_dir(os.path.join(scratch, "lighttpd"))
    docroot = make_dir(os.path.join(root, "htdocs"))
    cgi_bin = make_dir(os.path.join(docroot, "cgi-bin"))
    shutil.copyfile(CGI, os.path.join(cgi_bin, "hrflow.cgi"))
    give(os.path.join(cgi_bin, "hrflow.cgi"), 0o755)
    # Beside the program, where hrflow.cgi looks first; files of root (the
    # program's owner) that the server's user may read, the secret only
    # through its group.
    with open(os.path.join(cgi_bin, "hrflow.secret"), "w") as f:
        f.write(SECRETS[0] + "\n")
    give(os.path.join(cgi_bin, "hrflow.secret"), 0o640, group=True)
    with open(os.path.join(cgi_bin, "hrflow.conf"), "w") as f:
        f.write("HrflowSecretFile hrflow.secret\nHrflowMaxBody 2000\n"
                f"HrflowHandler * {scratch}/handlers/record.sh "
                f"{scratch}/out\n")
    give(os.path.join(cgi_bin, "hrflow.conf"), 0o644)

    port = free_port()
    user, group = run_user()
    conf = os.path.join(root, "lighttpd.conf")
    # As the httpd fixtures' PassEnv: a CGI built with the sanitizers
    # reports into the folder the log check reads.
    sanitizer_env = ", ".join(f'"{name}" => "{os.environ[name]}"'
                              for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS")
                              if SANITIZE and name in os.environ)
    with open(conf, "w") as f:
        f.write(f"""server.modules = ("mod_cgi", "mod_setenv")
setenv.add-environment = ({sanitizer_env})
server.document-root = "{docroot}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{root}/error.log"
server.breakagelog = "{root}/cgi-stderr.log"
server.pid-file = "{root}/lighttpd.pid"
cgi.assign = (".cgi" => "")
""" + (f'server.username = "{user}"\nserver.groupname = "{group}"\n'
       if group else ""))
    for name in ("error.log", "cgi-stderr.log"):
        open(os.path.join(root, name), "a").close()
        if os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
    check = subprocess.run([LIGHTTPD, "-tt", "-f", conf],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([LIGHTTPD, "-D", "-f", conf],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.time() < deadline, "lighttpd did not come up"
                time.sleep(0.1)
        yield {"port": port, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(server, method="POST", body=b"", headers=None):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    conn.request(method, "/cgi-bin/hrflow.cgi", body=body,
                 headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r, data


def stderr_log(server):
    return open(os.path.join(server["root"], "cgi-stderr.log")).read()


def test_signed_event_runs_the_handler(lighttpd, out):
    r, data = request(lighttpd, headers={
        "HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], EVENT)})
    assert r.status == 200, data
    assert r.getheader("Content-Type") == "application/json"
    assert json.loads(data) == {"status": "ok", "events": 1, "handled": 1,
                                "ignored": 0}
    run = records(out)[0]
    assert run["env"]["HRFLOW_PROFILE_KEY"] == "k-lighttpd"
    assert run["env"]["HRFLOW_SIGNATURE"] == "verified"
    assert run["stdin"] == EVENT


def test_body_event_with_body_signature(lighttpd, out):
    """The signature of the raw body, the event in the body itself."""
    sig = body_signature(SECRETS[0], EVENT)
    r, data = request(lighttpd, body=EVENT, headers={
        "Content-Type": "application/json", "HRFLOW-SIGNATURE": sig})
    assert r.status == 200, data
    assert records(out)[0]["stdin"] == EVENT


@pytest.mark.parametrize("case,status,error", [
    ("wrong secret", 401, "invalid_signature"),
    ("no signature", 401, "missing_signature"),
    ("GET", 405, None),
    ("too large", 413, None),
    ("bad type", 415, None),
    ("bad json", 400, None),
])
def test_refusals_have_the_spec_status(lighttpd, out, case, status, error):
    signed = {"HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], EVENT)}
    args = {
        "wrong secret": dict(headers={
            "HTTP-HRFLOW-SIGNATURE": signed_value("not-the-secret", EVENT)}),
        "no signature": dict(body=EVENT,
                             headers={"Content-Type": "application/json"}),
        "GET": dict(method="GET", headers=signed),
        "too large": dict(body=b"x" * 5000, headers=dict(
            signed, **{"Content-Type": "application/json"})),
        "bad type": dict(body=EVENT, headers={
            "Content-Type": "text/plain",
            "HRFLOW-SIGNATURE": body_signature(SECRETS[0], EVENT)}),
        "bad json": dict(headers={"HTTP-HRFLOW-SIGNATURE":
                                  signed_value(SECRETS[0], b'{"type":')}),
    }[case]
    r, data = request(lighttpd, **args)
    assert r.status == status, (case, data)
    body = json.loads(data)
    assert body["status"] == "error"
    if error:
        assert body["error"] == error
    if status == 405:
        assert r.getheader("Allow") == "POST"
    assert records(out) == []
    # The program's standard error: lighttpd's server.breakagelog.
    assert wait_until(lambda: f"refused with {status}" in stderr_log(
        lighttpd)), stderr_log(lighttpd)
    assert SECRETS[0] not in stderr_log(lighttpd)
    assert not [m for m in CRASH_MARKS if m in stderr_log(lighttpd)]
