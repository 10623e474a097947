"""A secret file holds one secret per line, whatever its length up to the
documented bound (65536 bytes); a longer line is a startup error.  Both
front ends read secret files the same way."""
import os

import pytest

from conftest import Httpd, write_private
from hrflow_sign import signed_value
from test_cgi import cgi_dir, run_cgi, tool, write_conf  # noqa: F401

# 5000 bytes: more than the 4095 a line could hold before.
LONG = "s" * 4000 + "t" * 1000
OVERLONG = "u" * 70000
EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-long"}}'
JSON = {"Content-Type": "application/json"}


def endpoint(secret_file):
    return ("<Location /hook>\n    SetHandler hrflow-webhook\n"
            f"    HrflowSecretFile {secret_file}\n"
            "    HrflowHandler * /bin/true\n</Location>\n")


def test_module_long_secret_line_is_one_secret(scratch):
    path = os.path.join(scratch, "long.secret")
    write_private(path, "# rotation\n" + LONG + "\n")
    server = Httpd("secret-long", scratch)
    server.write_config(endpoint(path))
    server.start()
    try:
        sig = {"HTTP-HRFLOW-SIGNATURE": signed_value(LONG, EVENT)}
        r, data = server.request("POST", "/hook", EVENT, sig)
        assert r.status == 200, data
        part = {"HTTP-HRFLOW-SIGNATURE": signed_value(LONG[:4095], EVENT)}
        r, data = server.request("POST", "/hook", EVENT, part)
        assert r.status == 401, data
    finally:
        server.stop()


def test_module_overlong_secret_line_fails_configtest(scratch):
    path = os.path.join(scratch, "overlong.secret")
    write_private(path, "ok\n" + OVERLONG + "\n")
    server = Httpd("secret-overlong", scratch)
    server.write_config(endpoint(path))
    r = server.apachectl("-t")
    assert r.returncode != 0
    assert (f"HrflowSecretFile: line 2 of {path}: longer than 65536 bytes"
            in r.stderr), r.stderr


def test_cgi_long_secret_line_is_one_secret(cgi_dir):
    write_conf(cgi_dir, LONG + "\n", name="hrflow.secret")
    conf = write_conf(cgi_dir, "HrflowSecretFile hrflow.secret\n"
                      "HrflowHandler * /bin/true\n")
    fields, body, err, _ = run_cgi(
        conf, body=EVENT, ctype="application/json",
        headers={"HTTP-HRFLOW-SIGNATURE": signed_value(LONG, EVENT)})
    assert fields["Status"] == "200 OK", err
    sign = tool("--sign", "--config", conf, stdin=EVENT)
    assert sign.stdout.decode().strip() == signed_value(LONG, EVENT)
    assert LONG not in err


def test_cgi_overlong_secret_line_fails_check(cgi_dir):
    secret = write_conf(cgi_dir, OVERLONG + "\n", name="hrflow.secret")
    conf = write_conf(cgi_dir, "HrflowSecretFile hrflow.secret\n")
    r = tool("--check", conf)
    assert r.returncode == 1
    assert (f"HrflowSecretFile: line 1 of {secret}: longer than 65536 bytes"
            in r.stderr.decode())
