"""The request path under pressure: bodies sent with the wrong method,
httpd's own body limits, and how long one request may hold a worker.

Endpoints that the shared servers do not have run on servers of this file,
one per front end (the module, and hrflow.cgi under mod_cgid)."""
import json
import os
import socket
import time

import pytest

from conftest import (CGI, MODULES_DIR, Httpd, install_cgi, run_user,
                      write_private)

JSON = {"Content-Type": "application/json"}


def answer(data):
    return json.loads(data)


# ---- a method other than POST, with a body --------------------------------

def raw_exchange(port, head, body, chunks=None):
    """Sends a whole request (head, then body or chunks), then reads the whole
    answer: a server that resets the connection fails here."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        if chunks is None:
            s.sendall(body)
        else:
            for c in chunks:
                s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
            s.sendall(b"0\r\n\r\n")
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, v in (x.split(": ", 1) for x in lines[1:])}
    if fields.get("transfer-encoding") == "chunked":
        size, _, rest = payload.partition(b"\r\n")
        payload = rest[:int(size, 16)]
    return lines[0], fields, payload


@pytest.mark.parametrize("method,size", [("PUT", 100 * 1024), ("GET", 300),
                                         ("DELETE", 20000)])
def test_405_for_a_body_sent_with_another_method(httpd, out, method, size):
    """The client sends the whole body, then reads a whole 405 (no reset)."""
    r, data = httpd.request(method, "/hook", b"x" * size, JSON)
    assert r.status == 405
    assert r.getheader("Allow") == "POST"
    assert answer(data) == {"status": "error",
                            "error": "method_not_allowed"}


def test_405_for_a_chunked_body_sent_with_put(httpd, out):
    head = (b"PUT /hook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    status, fields, payload = raw_exchange(httpd.port, head, None,
                                           [b"y" * 8192] * 12)
    assert status.startswith("HTTP/1.1 405 "), status
    assert answer(payload)["error"] == "method_not_allowed"


# ---- servers of this file ------------------------------------------------

@pytest.fixture(scope="module")
def naps(scratch):
    d = os.path.join(scratch, "reqpath-out")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o777)
    return d


def own_endpoints(scratch, naps):
    h = f"{scratch}/handlers"
    return {
        # A batch shares one budget of HrflowTimeout seconds.
        "/budget": ["HrflowSignature optional", "HrflowTimeout 1",
                    f"HrflowHandler * {h}/nap.sh {naps} 0.6"],
        "/patient": ["HrflowSignature optional", "HrflowTimeout 60",
                     f"HrflowHandler * {h}/nap.sh {naps} 1"],
        "/limited": ["HrflowSignature optional", "LimitRequestBody 100",
                     "HrflowHandler * /bin/true"],
        "/small": ["HrflowSignature optional", "HrflowMaxBody 300",
                   "HrflowHandler * /bin/true"],
    }


def module_config(scratch, naps):
    text = ""
    for path, lines in own_endpoints(scratch, naps).items():
        body = "".join(f"    {x}\n" for x in lines)
        text += (f"<Location {path}>\n    SetHandler hrflow-webhook\n"
                 f"{body}</Location>\n")
    return text


def cgi_config(scratch, naps):
    d = install_cgi(scratch)
    text = "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                   for m in ("cgid", "alias", "env"))
    for path, lines in own_endpoints(scratch, naps).items():
        conf = os.path.join(d, "reqpath-" + path.strip("/") + ".conf")
        write_private(conf, "\n".join(x for x in lines
                                      if x.startswith("Hrflow")) + "\n")
        limits = "".join(f"    {x}\n" for x in lines
                         if not x.startswith("Hrflow"))
        text += (f"ScriptAlias {path} {d}/hrflow.cgi\n"
                 f"<Location {path}>\n    SetEnv HRFLOW_CONFIG {conf}\n"
                 f"{limits}</Location>\n")
    return text


@pytest.fixture(scope="module", params=["module", "cgi"])
def server(request, scratch, naps):
    s = Httpd("reqpath-" + request.param, scratch)
    s.front = request.param
    s.write_config(module_config(scratch, naps) if request.param == "module"
                   else cgi_config(scratch, naps))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def fresh_naps(naps):
    for name in os.listdir(naps):
        os.unlink(os.path.join(naps, name))
    return naps


def started(naps):
    try:
        return open(os.path.join(naps, "naps.log")).read().splitlines()
    except FileNotFoundError:
        return []


def wait_until(cond, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    return cond()


# ---- httpd's LimitRequestBody and HrflowMaxBody: the JSON 413 -------------

def module_only(server):
    if server.front != "module":
        pytest.skip("the body limits of httpd in front of a CGI are httpd's")


def test_limit_request_body_gives_the_json_413(server):
    module_only(server)
    body = b'{"type":"a.b.c","pad":"' + b"x" * 200 + b'"}'
    r, data = server.request("POST", "/limited", body, JSON)
    assert r.status == 413
    assert r.getheader("Content-Type") == "application/json"
    assert answer(data) == {"status": "error", "error": "body_too_large"}


def test_limit_request_body_chunked_gives_the_json_413(server):
    module_only(server)
    head = (b"POST /limited HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    status, fields, payload = raw_exchange(
        server.port, head, None, [b'{"type":"a.b.c","pad":"', b"x" * 90,
                                  b"x" * 90, b'"}'])
    assert status.startswith("HTTP/1.1 413 "), status
    assert fields["content-type"] == "application/json"
    assert answer(payload) == {"status": "error", "error": "body_too_large"}


def test_chunked_body_over_max_body_gives_the_json_413(server):
    head = (b"POST /small HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    status, fields, payload = raw_exchange(
        server.port, head, None,
        [b'{"type":"a.b.c","pad":"'] + [b"x" * 4000] * 30 + [b'"}'])
    assert status.startswith("HTTP/1.1 413 "), status
    assert answer(payload) == {"status": "error", "error": "body_too_large"}


# ---- synchronous mode: one budget per request ----------------------------

def batch(n, prefix):
    return json.dumps([{"type": "profile.parsing.success",
                        "profile": {"key": f"{prefix}-{i}"}}
                       for i in range(n)]).encode()


@pytest.mark.expect_log(r"handler=\S*/nap\.sh result=timeout",
                         r"failed: \d+ events not run",
                         r"time budget .* is spent: \d+ events not run")
def test_batch_shares_one_time_budget(server, fresh_naps):
    """8 handlers of 0.6 s under HrflowTimeout 1: one runs, the second is
    stopped at the budget, six never start; the request does not take
    8 x 0.6 s."""
    start = time.time()
    r, data = server.request("POST", "/budget", batch(8, "budget"), JSON)
    took = time.time() - start
    assert took < 3.5, took
    assert r.status == 500
    got = answer(data)
    assert got["error"] == "handler_failed"
    assert got["events"] == 8
    assert got["handled"] + got["failed"] + got["not_run"] == 8
    assert got["failed"] == 1 and got["not_run"] >= 5
    assert len(started(fresh_naps)) == 8 - got["not_run"]
    log = server.error_log(wait_for="not run")
    assert f"{got['not_run']} events not run" in log


@pytest.mark.expect_log(r"client gone: \d+ events not run",
                         r"handler=\S*/nap\.sh result=")
def test_client_gone_stops_the_batch(server, fresh_naps):
    """The module sees a client that has closed its connection and starts
    no further handler (a CGI cannot tell: see README)."""
    module_only(server)
    body = batch(5, "gone")
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST /patient HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert wait_until(lambda: len(started(fresh_naps)) >= 1)
    s.close()
    assert wait_until(lambda: "POST /patient" in server.access_log(),
                      timeout=20)
    assert len(started(fresh_naps)) == 1
    assert "client gone: 4 events not run" in server.error_log()
