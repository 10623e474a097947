"""Only RFC 8259 JSON is JSON, and every accepted event can run.

Against both front ends: bodies that json-c would take but RFC 8259 does
not are 400 JSON answers, in bounded time (a client timeout turns a hang
into a failure); events with over-long names or values still run, with the
over-long variable left out; and in durable mode an event nested as deep
as a body may be runs its handler.
"""
import http.client
import json
import os
import subprocess
from urllib.parse import urlencode

import pytest

from conftest import (CGI, SECRETS, Httpd, in_state, limit_address_space,
                      lines, records, wait_until)
from hrflow_sign import body_signature, signed_value
from test_spool import spool_config

JSON = {"Content-Type": "application/json"}
CLIENT_TIMEOUT = 20
MAX_DEPTH = 32  # README: JSON nesting


def post(server, path, body, headers=JSON):
    """One POST with a bounded wait: a server that loops fails the test."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port,
                                      timeout=CLIENT_TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return r, r.read()
    finally:
        conn.close()


def assert_400(r, data, error="invalid_json"):
    assert r.status == 400, data
    assert r.getheader("Content-Type", "").startswith("application/json")
    assert json.loads(data) == {"status": "error", "error": error}


# Bodies json-c accepts (or that once confused the batch splitter) and
# RFC 8259 does not; each is a 400 and runs nothing.
NOT_JSON = {
    "loops_for_ever": b"[{'}':1}]",
    "fragment": b'[{\'"\':1,"m":"}]","type":"profile.parsing.success"}]',
    "single_quotes": b"{'type':'profile.parsing.success'}",
    "nan": b'{"type":"profile.parsing.success","n":NaN}',
    "infinity": b'{"type":"profile.parsing.success","n":-Infinity}',
    "raw_control": b'{"type":"profile.parsing.success","m":"a\x01b"}',
    "raw_tab": b'{"type":"profile.parsing.success","m":"a\tb"}',
    "comment": b'{"type":"profile.parsing.success"/* c */}',
    "trailing_comma": b'[{"type":"profile.parsing.success"},]',
    "leading_zero": b'{"type":"profile.parsing.success","n":007}',
    "bad_escape": b'{"type":"profile.parsing.success","m":"\\x41"}',
    "lone_surrogate": b'{"type":"profile.parsing.success","m":"\\ud800"}',
    "bad_utf8": b'{"type":"profile.parsing.success","m":"\xc0\xaf"}',
    "nul_byte": b'{"type":"profile.parsing.success"}\x00',
}


@pytest.mark.parametrize("name", sorted(NOT_JSON))
def test_not_rfc_8259_is_400(httpd, out, name):
    r, data = post(httpd, "/optional", NOT_JSON[name])
    assert_400(r, data)
    assert records(out) == []


def test_the_looping_body_signed_and_as_payload(httpd, out):
    """Also when signed, and as a signature's PAYLOAD."""
    body = NOT_JSON["loops_for_ever"]
    r, data = post(httpd, "/hook", body, {
        "Content-Type": "application/json",
        "HTTP-HRFLOW-SIGNATURE": body_signature(SECRETS[0], body)})
    assert_400(r, data)
    r, data = post(httpd, "/hook", b"", {
        "HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], body)})
    assert_400(r, data)
    assert records(out) == []
    # The server is still there for the next request.
    r, data = post(httpd, "/optional",
                   b'{"type":"profile.parsing.success"}')
    assert r.status == 200, data


def cgi_env():
    """A clean environment, with the sanitizers' options when they run."""
    env = {"PATH": "/usr/bin:/bin"}
    for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@pytest.mark.parametrize("name", ["loops_for_ever", "fragment"])
def test_cgi_sign_refuses_the_reported_bodies(tmp_path, name):
    conf = tmp_path / "hrflow.conf"
    conf.write_text("HrflowSecret s\n")
    conf.chmod(0o600)
    r = subprocess.run([CGI, "--sign", "--config", str(conf)],
                       input=NOT_JSON[name], capture_output=True,
                       env=cgi_env(), timeout=CLIENT_TIMEOUT,
                       preexec_fn=limit_address_space)
    assert r.returncode == 1, r
    assert r.stdout == b""
    assert b"not an event: invalid_json" in r.stderr


def test_nul_in_type_is_400(httpd, out):
    r, data = post(httpd, "/optional",
                   b'{"type":"profile.parsing.success\\u0000x"}')
    assert_400(r, data, "invalid_type")
    assert records(out) == []


def test_type_over_255_bytes_is_400(httpd, out):
    """A type part of 200 KiB could not be passed to a handler at all."""
    kind = "profile.parsing." + "s" * (200 * 1024)
    r, data = post(httpd, "/optional", json.dumps({"type": kind}).encode())
    assert_400(r, data, "invalid_type")
    assert records(out) == []


def test_long_value_left_out_handler_runs(httpd, out):
    key = "k" * (200 * 1024)
    event = {"type": "profile.parsing.success", "origin": "api",
             "profile": {"key": key}}
    r, data = post(httpd, "/optional", json.dumps(event).encode())
    assert r.status == 200, data
    (run,) = records(out)
    assert "HRFLOW_PROFILE_KEY" not in run["env"]
    assert run["env"]["HRFLOW_ORIGIN"] == "api"
    assert json.loads(run["stdin"])["profile"]["key"] == key


def test_long_name_left_out_handler_runs(httpd, out):
    name = "n" * (200 * 1024)
    event = {"type": "profile.parsing.success", "origin": "api",
             name: "v", "profile": {"key": "short"}}
    r, data = post(httpd, "/optional", json.dumps(event).encode())
    assert r.status == 200, data
    (run,) = records(out)
    assert not [k for k in run["env"] if len(k) > 1024]
    assert run["env"]["HRFLOW_PROFILE_KEY"] == "short"
    assert json.loads(run["stdin"])[name] == "v"
    assert "variables left out" in httpd.error_log(
        wait_for="variables left out")


def deep_event(key, depth=MAX_DEPTH):
    """An event object nested depth levels deep, the object included."""
    inner = "[" * (depth - 1) + "0" + "]" * (depth - 1)
    return ('{"type":"profile.parsing.success","profile":{"key":"%s"},'
            '"deep":%s}' % (key, inner)).encode()


def test_deepest_event_runs_synchronously(httpd, out):
    r, data = post(httpd, "/optional", deep_event("deep-sync"))
    assert r.status == 200, data
    assert len(records(out)) == 1
    r, data = post(httpd, "/optional", deep_event("too-deep", MAX_DEPTH + 1))
    assert_400(r, data)


@pytest.fixture(scope="module")
def durable(scratch):
    out = os.path.join(scratch, "json-spool-out")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    server = Httpd("json-spool", scratch)
    server.spool = os.path.join(scratch, "json-spool")
    server.out = out
    server.write_config(spool_config(scratch, server.spool, out))
    server.start()
    yield server
    server.stop()


def ran_keys(server):
    return [line.split()[2] for line in
            lines(os.path.join(server.out, "ran.log"))
            if len(line.split()) == 3]


@pytest.mark.parametrize("shape", ["object", "form"])
def test_deepest_event_runs_in_durable_mode(durable, shape):
    """A 202 is a promise: the deepest accepted event runs, not failed/."""
    key = "deep-" + shape
    if shape == "object":
        body, headers = deep_event(key), JSON
    else:
        # event object > profile object > MAX_DEPTH - 2 arrays.
        inner = "[" * (MAX_DEPTH - 2) + "0" + "]" * (MAX_DEPTH - 2)
        profile = '{"key":"%s","deep":%s}' % (key, inner)
        body = urlencode({"type": "profile.parsing.success",
                          "profile": profile}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    r, data = post(durable, "/q", body, headers)
    assert r.status == 202, data
    assert wait_until(lambda: key in ran_keys(durable)), \
        (in_state(durable, "failed"), durable.error_log())
    assert in_state(durable, "failed") == []


def test_long_name_runs_in_durable_mode(durable):
    event = {"type": "profile.parsing.success", "n" * (200 * 1024): "v",
             "profile": {"key": "long-name-durable"}}
    r, data = post(durable, "/q", json.dumps(event).encode())
    assert r.status == 202, data
    assert wait_until(lambda: "long-name-durable" in ran_keys(durable)), \
        (in_state(durable, "failed"), durable.error_log())
    assert in_state(durable, "failed") == []
    assert "variables left out" in durable.error_log(
        wait_for="variables left out")
