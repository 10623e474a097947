"""A handler script saved with CRLF line endings: exec fails with ENOENT
(the kernel looks for the interpreter "/bin/sh\\r"), which read "No such
file or directory" for a file that is plainly there.  Both front ends, and
their config checks, say "CRLF line endings" instead."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import CGI, MODULES_DIR, Httpd, make_dir

EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-crlf"}}'
SCRIPT = "#!/bin/sh\ncat >/dev/null\nexit 0\n"


def write_handler(path, crlf):
    text = SCRIPT.replace("\n", "\r\n") if crlf else SCRIPT
    with open(path, "w", newline="") as f:
        f.write(text)
    os.chmod(path, 0o755)


@pytest.fixture(scope="module", params=["module", "cgi"])
def crlf_server(request, scratch):
    """An endpoint whose handler is sound at startup: the test then saves it
    with CRLF endings, as an editor on Windows would."""
    d = make_dir(os.path.join(scratch, "crlf-" + request.param))
    handler = os.path.join(d, "handler.sh")
    write_handler(handler, crlf=False)
    server = Httpd("crlf-" + request.param, scratch)
    lines = ["HrflowSignature optional", f"HrflowHandler * {handler}"]
    if request.param == "module":
        server.write_config("<Location /crlf>\nSetHandler hrflow-webhook\n"
                            + "\n".join(lines) + "\n</Location>\n")
    else:
        shutil.copyfile(CGI, os.path.join(d, "hrflow.cgi"))
        os.chmod(os.path.join(d, "hrflow.cgi"), 0o755)
        conf = os.path.join(d, "hrflow.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(conf, 0o644)
        server.write_config(
            "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                    for m in ("cgid", "alias", "env"))
            + f"ScriptAlias /crlf {d}/hrflow.cgi\n"
            f"<Location /crlf>\nSetEnv HRFLOW_CONFIG {conf}\n</Location>\n")
    server.handler = handler
    server.start()
    yield server
    server.stop()


@pytest.mark.expect_log(r"CRLF line endings", r"result=not started")
def test_crlf_handler_is_named_as_such(crlf_server):
    write_handler(crlf_server.handler, crlf=False)
    r, data = crlf_server.request("POST", "/crlf", EVENT,
                                  {"Content-Type": "application/json"})
    assert r.status == 200, data

    write_handler(crlf_server.handler, crlf=True)
    try:
        r, data = crlf_server.request("POST", "/crlf", EVENT,
                                      {"Content-Type": "application/json"})
    finally:
        write_handler(crlf_server.handler, crlf=False)
    assert r.status == 500
    assert json.loads(data)["status"] == "error"
    log = crlf_server.error_log(wait_for="CRLF line endings")
    line = [x for x in log.splitlines() if "CRLF line endings" in x]
    assert line, log
    assert crlf_server.handler in line[-1]
    assert "No such file or directory" not in line[-1]


def test_configtest_names_crlf_handler(scratch):
    d = make_dir(os.path.join(scratch, "crlf-configtest"))
    handler = os.path.join(d, "handler.sh")
    write_handler(handler, crlf=True)
    server = Httpd("crlf-configtest", scratch)
    server.write_config("<Location /crlf>\nSetHandler hrflow-webhook\n"
                        "HrflowSignature optional\n"
                        f"HrflowHandler * {handler}\n</Location>\n")
    r = server.apachectl("-t")
    assert r.returncode != 0
    assert f"cannot run {handler}: it has CRLF line endings" in r.stderr


def test_cgi_check_names_crlf_handler(scratch):
    d = make_dir(os.path.join(scratch, "crlf-check"))
    handler = os.path.join(d, "handler.sh")
    write_handler(handler, crlf=True)
    conf = os.path.join(d, "hrflow.conf")
    with open(conf, "w") as f:
        f.write(f"HrflowSignature optional\nHrflowHandler * {handler}\n")
    os.chmod(conf, 0o644)
    r = subprocess.run([CGI, "--check", conf], capture_output=True,
                       text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 1
    assert f"cannot run {handler}: it has CRLF line endings" in r.stderr
