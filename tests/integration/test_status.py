"""Every status of SPEC section 5, against the real server."""
import json
import os
import socket
import time

import pytest

from conftest import SECRETS, records
from hrflow_sign import body_signature, signed_value

JSON = {"Content-Type": "application/json"}


def answer(data):
    return json.loads(data)


def test_200_handled(httpd, out):
    r, body = httpd.request("POST", "/optional",
                            b'{"type":"profile.parsing.success"}', JSON)
    assert r.status == 200
    assert r.getheader("Content-Type") == "application/json"
    assert answer(body) == {"status": "ok", "events": 1, "handled": 1,
                            "ignored": 0}


def test_200_ignored_when_no_handler_maps(httpd, out):
    batch = b'[{"type":"profile.parsing.success"},{"type":"job.parsing.success"}]'
    r, body = httpd.request("POST", "/jobs-only", batch, JSON)
    assert r.status == 200
    assert answer(body) == {"status": "ok", "events": 2, "handled": 1,
                            "ignored": 1}
    assert [x["env"]["HRFLOW_TYPE"] for x in records(out)] == \
        ["job.parsing.success"]


@pytest.mark.parametrize("body,ctype,error", [
    (b'{"type":', "application/json", "invalid_json"),
    (b'{"type":"profile.parsing.success"} trailing', "application/json",
     "invalid_json"),
    (b"[]", "application/json", "empty_batch"),
    (b'[{"type":"a.b.c"}, 7]', "application/json", "invalid_event"),
    (b'{"type":"Profile.Parsing.Success"}', "application/json", "invalid_type"),
    (b'{"type":"profile.parsing"}', "application/json", "invalid_type"),
    (b'{"origin":"api"}', "application/json", "invalid_type"),
    (b"type=profile.parsing.success&profile=%7Bnot-json",
     "application/x-www-form-urlencoded", "invalid_form"),
    (b"type=profile.parsing.success&x=%G1", "application/x-www-form-urlencoded",
     "invalid_form"),
    (b"", "application/json", "invalid_json"),
])
def test_400_malformed(httpd, out, body, ctype, error):
    r, data = httpd.request("POST", "/optional", body, {"Content-Type": ctype})
    assert r.status == 400
    assert answer(data) == {"status": "error", "error": error}
    assert records(out) == []


def test_400_bad_base64_payload(httpd, out):
    payload = "eyJ0eXBlIjoi*bad"
    mac = body_signature(SECRETS[0], payload.encode(), "base64")
    r, data = httpd.request("POST", "/hook", b"",
                            {"HTTP-HRFLOW-SIGNATURE": mac + "." + payload})
    assert r.status == 400
    assert answer(data)["error"] == "invalid_base64"


def test_401_missing_signature(httpd, out):
    r, data = httpd.request("POST", "/hook",
                            b'{"type":"profile.parsing.success"}', JSON)
    assert r.status == 401
    assert answer(data) == {"status": "error", "error": "missing_signature"}
    assert records(out) == []


def test_401_wrong_signature(httpd, out):
    r, data = httpd.request("POST", "/hook", b"", {
        "HTTP-HRFLOW-SIGNATURE": signed_value("wrong", b'{"type":"a.b.c"}')})
    assert r.status == 401
    assert answer(data)["error"] == "invalid_signature"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_405_with_allow(httpd, out, method):
    r, data = httpd.request(method, "/hook")
    assert r.status == 405
    assert r.getheader("Allow") == "POST"
    assert answer(data)["error"] == "method_not_allowed"


def test_413_body_by_length(httpd, out):
    body = b'{"type":"a.b.c","pad":"' + b"x" * 400 + b'"}'
    r, data = httpd.request("POST", "/small", body, JSON)
    assert r.status == 413
    assert answer(data)["error"] == "body_too_large"
    assert records(out) == []


def test_413_chunked_body(httpd, out):
    chunks = [b'{"type":"a.b.c","pad":"'] + [b"x" * 100] * 5 + [b'"}']
    r, data = httpd.request("POST", "/small", iter(chunks),
                            {"Content-Type": "application/json",
                             "Transfer-Encoding": "chunked"})
    assert r.status == 413
    assert records(out) == []


def test_413_batch(httpd, out):
    batch = json.dumps([{"type": "a.b.c"}] * 3).encode()
    r, data = httpd.request("POST", "/small", batch, JSON)
    assert r.status == 413
    assert answer(data)["error"] == "too_many_events"
    assert records(out) == []


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", None])
def test_415_content_type(httpd, out, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r, data = httpd.request("POST", "/optional", b'{"type":"a.b.c"}', headers)
    assert r.status == 415
    assert answer(data)["error"] == "unsupported_media_type"


@pytest.mark.expect_log(r"output: cannot process profile\.parsing\.error",
                        r"type=profile\.parsing\.error .*result=exit 3",
                        r"event \w+ failed: \d+ events not run")
def test_500_failing_handler_stops_the_batch(httpd, out):
    batch = (b'[{"type":"profile.parsing.success"},{"type":"profile.parsing.error"},'
             b'{"type":"profile.parsing.success"}]')
    r, data = httpd.request("POST", "/fail", batch, JSON)
    assert r.status == 500
    assert answer(data) == {"status": "error", "error": "handler_failed",
                            "events": 3, "handled": 1, "ignored": 0,
                            "failed": 1, "not_run": 1}
    assert len(records(out)) == 1
    log = httpd.error_log(wait_for="result=exit 3")
    assert "cannot process profile.parsing.error" in log
    assert "result=exit 3" in log


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.expect_log(r"type=job\.train\.start .*/slow\.sh result=timeout")
def test_500_timeout_kills_handler_and_children(httpd, out):
    start = time.time()
    r, data = httpd.request("POST", "/slow", b'{"type":"job.train.start"}', JSON)
    took = time.time() - start
    assert r.status == 500
    assert answer(data)["error"] == "handler_failed"
    assert took < 15
    leader, child = map(int, open(os.path.join(out, "slow.pids")).read().split())
    assert not alive(leader) and not alive(child)
    assert "result=timeout" in httpd.error_log(wait_for="result=timeout")


def test_server_still_serves_and_log_is_clean(httpd):
    """Runs last in this file: after every refusal above.  (Crashes are
    looked for after every test, by conftest.)"""
    r, data = httpd.request("GET", "/static.txt")
    assert r.status == 200 and data == b"ok\n"
    log = httpd.error_log()
    for secret in SECRETS:
        assert secret not in log
        assert secret not in httpd.access_log()
