"""Hostile input against both front ends: a table of bad bodies, headers and
transports, each with the status it must get and, where the receiver
answers, a JSON error body that parses.  After each one the server must
still run a good signed event, and the error log check of conftest applies
(no crashed child, no unexpected error line, no secret).

Requests go over raw sockets: http.client cannot send a short body, a bad
chunk size, repeated headers or pipelined requests."""
import base64
import json
import os
import socket
import time
from dataclasses import dataclass

import pytest

from conftest import SANITIZE, SECRETS
from hrflow_sign import body_signature, signed_value

EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-1"}}'
GOOD_SIGNATURE = signed_value(SECRETS[0], EVENT)
TIMEOUT = 10            # seconds a case may take before it counts as a hang
PENDING_TIMEOUT = 5     # the same for a case known to hang today


# ---- a raw HTTP/1.1 client ---------------------------------------------------

def http_request(method="POST", path="/optional", body=b"", headers=(),
                 ctype="application/json", length=None, close=True):
    """One request as bytes.  headers: (name, value) pairs, repeats kept;
    length: the Content-Length to claim (default: the body's, none for a
    GET without body); ctype None: no Content-Type."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if ctype is not None:
        lines.append(f"Content-Type: {ctype}")
    if length is None and (body or method == "POST"):
        length = len(body)
    if length is not None and length is not False:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*chunks, sizes=None):
    """A chunked body; sizes replaces the true chunk sizes (hex text)."""
    out = b""
    for i, chunk in enumerate(chunks):
        size = sizes[i] if sizes else "%x" % len(chunk)
        out += size.encode() + b"\r\n" + chunk + b"\r\n"
    return out + b"0\r\n\r\n"


class NoAnswer(AssertionError):
    """The server closed the connection without a whole answer."""


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes


def read_all(sock, timeout):
    """Everything until the server closes the connection."""
    data = b""
    deadline = time.time() + timeout
    while True:
        sock.settimeout(max(0.1, deadline - time.time()))
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not part:
            return data
        data += part
        if time.time() > deadline:
            raise TimeoutError("no end of answer after %d s" % timeout)


def parse_responses(data, methods):
    """The responses in data, one per request method (HEAD has no body)."""
    try:
        return parse(data, methods)
    except (ValueError, IndexError) as e:
        raise NoAnswer(f"not an HTTP answer ({e}): {data[:300]!r}")


def parse(data, methods):
    responses = []
    for method in methods:
        if not data:
            break
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, "answer cut inside its header: %r" % head[:200]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD":
            body = b""
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, data = data[:n], data[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size, _, data = data.partition(b"\r\n")
                n = int(size.split(b";")[0], 16)
                body, data = body + data[:n], data[n + 2:]
                if n == 0:
                    data = data.partition(b"\r\n")[2] if data.startswith(
                        b"\r\n") else data
                    break
        else:
            body, data = data, b""
        responses.append(Response(status, headers, body))
    return responses


def exchange(port, raw, methods=("POST",), timeout=TIMEOUT, shut=False,
             stop_after=None):
    """Sends raw, reads the answers.  shut: close our sending side after
    it; stop_after: close the connection after that many bytes, unread."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if stop_after is not None:
            s.sendall(raw[:stop_after])
            return []
        s.sendall(raw)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return parse_responses(read_all(s, timeout), methods)


# ---- the corpus --------------------------------------------------------------

@dataclass
class Case:
    name: str
    raw: bytes
    status: object          # an int, or a set of acceptable ones
    error: object = None    # the JSON "error" expected (str or set), if any
    json_body: bool = True  # the answer is the receiver's JSON
    methods: tuple = ("POST",)
    shut: bool = False
    stop_after: int = None  # no answer expected: the client goes away
    log: tuple = ()         # regexes of the error lines it may cause
    pending: tuple = ()     # front ends on which it fails today
    why: str = "parser fix pending"


def nested(depth):
    """An event whose JSON is depth levels deep (the object is level 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"type":"profile.parsing.success","x":%s}' % inner).encode()


def signed_header(payload):
    return [("HTTP-HRFLOW-SIGNATURE", signed_value(SECRETS[0], payload))]


def payload_header(payload_b64):
    """A signature header over an already encoded PAYLOAD (HMAC over it)."""
    mac = body_signature(SECRETS[0], payload_b64.encode(), "base64")
    sig = mac.replace("+", "-").replace("/", "_").rstrip("=")
    return [("HTTP-HRFLOW-SIGNATURE", sig + "." + payload_b64)]


def json_case(name, body, status=400, error="invalid_json", **kw):
    return Case(name, http_request(body=body), status, error, **kw)


def form_case(name, body, status=400, error="invalid_form", **kw):
    return Case(name, http_request(
        body=body, ctype="application/x-www-form-urlencoded"),
        status, error, **kw)



# Lines httpd logs at level error when a client sends less than it said.
READ_FAILED = r"AH01270: Error reading request entity data|AH01382"
BAD_BODIES = [
    json_case("truncated_object", b'{"type":"profile.parsing.success"'),
    json_case("truncated_string", b'{"type":"profile.pars'),
    json_case("truncated_batch", b'[{"type":"a.b.c"},'),
    json_case("nesting_at_the_limit", nested(32), 200, None),
    json_case("nesting_one_over", nested(33)),
    json_case("nesting_far_over", nested(5000)),
    json_case("unclosed_arrays", b'{"type":"a.b.c","x":' + b"[" * 100000),
    json_case("huge_exponent", b'{"type":"a.b.c","n":1e999999}', 200, None),
    # json-c would clamp it: a variable would not be what stdin says.
    json_case("huge_integer", b'{"type":"a.b.c","n":' + b"9" * 5000 + b"}"),
    json_case("integer_over_uint64",
              b'{"type":"a.b.c","b":123456789012345678901234567890}'),
    json_case("integer_at_uint64_max",
              b'{"type":"a.b.c","b":18446744073709551615}', 200, None),
    # json-c cuts a member name at \u0000: routing and the order key would
    # use another value than the handler's JSON shows.
    json_case("nul_escape_in_member_name",
              b'{"type":"job.deleted.success",'
              b'"type\\u0000":"profile.parse.success"}'),
    json_case("nul_escape_in_nested_name",
              b'{"type":"a.b.c","profile":{"key":"k","key\\u0000":"j"}}'),
    # ~1 MiB of empty containers: each would cost json-c a hash table
    # (~275 MB for the body); refused from the scanner's counts.
    json_case("batch_of_empty_objects", b"[" + b",".join([b"{}"] * 349000)
              + b"]", 413, "too_many_events"),
    json_case("event_of_empty_objects", b'{"type":"a.b.c","a":['
              + b",".join([b"{}"] * 349000) + b"]}", 413, "too_many_values"),
    json_case("event_of_many_numbers", b'{"type":"a.b.c","a":['
              + b",".join([b"0"] * 200000) + b"]}", 413, "too_many_values"),
    json_case("nan", b'{"type":"a.b.c","n":NaN}'),
    json_case("infinity", b'{"type":"a.b.c","n":Infinity}'),
    json_case("minus_infinity", b'{"type":"a.b.c","n":-Infinity}'),
    json_case("leading_zero", b'{"type":"a.b.c","n":012}'),
    json_case("single_quoted_key_loop", b"[{'}':1}]"),
    json_case("single_quoted_fragment",
              b'[{\'"\':1,"m":"}]","type":"profile.parsing.success"}]'),
    json_case("single_quoted_object", b"{'type':'profile.parsing.success'}"),
    json_case("trailing_comma", b'{"type":"a.b.c",}'),
    json_case("comment", b'{"type":"a.b.c"/* x */}'),
    json_case("raw_control_char", b'{"type":"a.b.c","m":"a\x01b"}'),
    json_case("raw_newline_in_string", b'{"type":"a.b.c","m":"a\nb"}'),
    json_case("nul_escape_in_type", b'{"type":"a.b.c\\u0000x"}', 400,
              "invalid_type"),
    json_case("unpaired_surrogate", b'{"type":"a.b.c","m":"\\ud800"}'),
    json_case("invalid_utf8", b'{"type":"a.b.c","m":"\xff\xfe"}'),
    json_case("overlong_utf8", b'{"type":"a.b.c","m":"\xc0\xaf"}'),
    json_case("byte_order_mark", b"\xef\xbb\xbf" + EVENT),
    # RFC 8259 leaves duplicate names to the receiver: either answer, but
    # an answer, and a healthy server.
    json_case("duplicate_type", b'{"type":"job.parsing.success",'
              b'"type":"profile.parsing.success"}', {200, 400},
              {None, "invalid_json", "invalid_event"}),
    json_case("empty_body", b""),
    json_case("whitespace_only", b" \t\r\n  \n"),
    json_case("scalar", b"42", 400, {"invalid_json", "invalid_event"}),
    json_case("batch_of_scalars", b"[1,2,3]", 400, "invalid_event"),
    json_case("type_not_a_string", b'{"type":["a.b.c"]}', 400,
              "invalid_type"),
]

CONTENT_TYPES = [
    Case("charset", http_request(body=EVENT,
                                 ctype="application/json; charset=utf-8"),
         200),
    Case("charset_upper", http_request(
        body=EVENT, ctype='Application/JSON;charset="UTF-8"'), 200),
    Case("missing", http_request(body=EVENT, ctype=None), 415,
         "unsupported_media_type"),
    Case("multipart", http_request(
        body=b'--x\r\nContent-Disposition: form-data; name="type"\r\n\r\n'
        b'a.b.c\r\n--x--\r\n', ctype="multipart/form-data; boundary=x"),
        415, "unsupported_media_type"),
    Case("text_plain", http_request(body=EVENT, ctype="text/plain"), 415,
         "unsupported_media_type"),
    Case("json_prefix", http_request(body=EVENT, ctype="application/jsonx"),
         415, "unsupported_media_type"),
    Case("empty_type", http_request(body=EVENT, ctype=""), 415,
         "unsupported_media_type"),
]

TRANSPORTS = [
    Case("shorter_body_then_close", http_request(body=EVENT[:20],
                                                 length=len(EVENT)),
         400, json_body=False, shut=True, log=(READ_FAILED,)),
    Case("half_body_then_gone", http_request(body=EVENT), None,
         stop_after=len(http_request(body=EVENT)) - len(EVENT) // 2,
         log=(READ_FAILED,)),
    Case("headers_then_gone", http_request(body=EVENT), None,
         stop_after=len(http_request(body=EVENT)) - len(EVENT),
         log=(READ_FAILED,)),
    Case("chunked_good", http_request(
        body=chunked(EVENT[:10], EVENT[10:]), length=False,
        headers=[("Transfer-Encoding", "chunked")]), 200),
    Case("chunked_bad_size", http_request(
        body=chunked(EVENT, sizes=["zz"]), length=False,
        headers=[("Transfer-Encoding", "chunked")]), 400, None,
        json_body=False, log=(READ_FAILED,)),
    Case("chunked_size_overflow", http_request(
        body=chunked(EVENT, sizes=["f" * 40]), length=False,
        headers=[("Transfer-Encoding", "chunked")]), {400, 413}, None,
        json_body=False, log=(READ_FAILED,)),
    Case("chunked_size_too_long", http_request(
        body=chunked(EVENT, sizes=["%x" % (len(EVENT) + 50)]), length=False,
        headers=[("Transfer-Encoding", "chunked")]), 400, None,
        json_body=False, shut=True, log=(READ_FAILED,)),
    Case("pipelined", http_request(body=EVENT, close=False)
         + http_request(body=b'{"type":'), [200, 400], "invalid_json",
         methods=("POST", "POST")),
]

HEADERS = [
    Case("big_header_value", http_request(
        body=EVENT, headers=[("X-Pad", "x" * 8000)]), 200),
    Case("header_over_the_server_limit", http_request(
        body=EVENT, headers=[("X-Pad", "x" * 300000)]), 400, None,
        json_body=False),
    Case("many_signature_headers", http_request(
        path="/hook", headers=signed_header(EVENT) * 60), 401,
        "invalid_signature"),
    Case("every_signature_header_name", http_request(
        path="/hook", headers=[("HTTP-HRFLOW-SIGNATURE", "0" * 64),
                               ("HRFLOW-SIGNATURE", "1" * 64),
                               ("HTTP-RIMINDER-SIGNATURE", "2" * 64)]),
        401, "invalid_signature"),
    Case("signature_many_dots", http_request(
        path="/hook", headers=[("HTTP-HRFLOW-SIGNATURE",
                                ".".join(["abc"] * 2000))]),
        401, "invalid_signature"),
    Case("signature_100k", http_request(
        path="/hook", headers=[("HTTP-HRFLOW-SIGNATURE", "A" * 102400)]),
        401, "invalid_signature"),
    Case("signature_100k_payload", http_request(
        path="/hook", headers=signed_header(
            b'{"type":"a.b.c","pad":"' + b"x" * 75000 + b'"}')), 200),
    Case("signature_empty", http_request(
        path="/hook", headers=[("HTTP-HRFLOW-SIGNATURE", "")]), 401,
        {"missing_signature", "invalid_signature"}),
    Case("signature_only_dot", http_request(
        path="/hook", headers=[("HTTP-HRFLOW-SIGNATURE", ".")]), 401,
        "invalid_signature"),
    Case("payload_not_json", http_request(
        path="/hook", headers=payload_header(
            base64.urlsafe_b64encode(b"hello, world").decode().rstrip("="))),
        400, "invalid_json"),
    Case("payload_single_quotes", http_request(
        path="/hook", headers=payload_header(
            base64.urlsafe_b64encode(b"[{'}':1}]").decode().rstrip("="))),
        400, "invalid_json"),
    Case("payload_over_max_events", http_request(
        path="/hook", headers=signed_header(
            json.dumps([{"type": "a.b.c"}] * 101).encode())),
        413, "too_many_events"),
]

FORMS = [
    form_case("bad_escape", b"type=profile.parsing.success&x=%G1"),
    form_case("escape_cut_short", b"type=profile.parsing.success&x=%4"),
    form_case("lone_percent", b"type=profile.parsing.success&x=%"),
    form_case("nul_in_type", b"type=profile.parsing%00.success", 400,
              {"invalid_form", "invalid_type"}),
    form_case("missing_type", b"origin=api&message=hello", 400,
              "invalid_type"),
    form_case("empty_form", b"", 400, {"invalid_form", "invalid_type"}),
    form_case("repeated_type", b"type=job.parsing.success"
              b"&type=profile.parsing.success", {200, 400},
              {None, "invalid_form", "invalid_type"}),
    form_case("profile_not_json", b"type=profile.parsing.success"
              b"&profile=%7Bnot-json"),
    form_case("profile_single_quotes", b"type=profile.parsing.success"
              b"&profile=%5B%7B%27%7D%27%3A1%7D%5D"),
    form_case("profile_deep", b"type=profile.parsing.success&profile="
              + b"%5B" * 100 + b"%5D" * 100),
    form_case("form_invalid_utf8", b"type=profile.parsing.success"
              b"&message=%FF%FE"),
]

METHODS = [
    Case("get", http_request("GET", body=b"", ctype=None, length=False),
         405, "method_not_allowed", methods=("GET",)),
    Case("head", http_request("HEAD", body=b"", ctype=None, length=False),
         405, None, json_body=False, methods=("HEAD",)),
    Case("put", http_request("PUT", body=EVENT), 405, "method_not_allowed",
         methods=("PUT",)),
    Case("options", http_request("OPTIONS", body=b"", ctype=None,
                                 length=False),
         405, "method_not_allowed", methods=("OPTIONS",)),
    # httpd answers TRACE itself, before any <Location> applies: the test
    # servers have TraceEnable off, as Debian's security.conf does.
    Case("trace", http_request("TRACE", body=b"", ctype=None, length=False),
         405, None, json_body=False, methods=("TRACE",)),
    Case("delete_with_body", http_request("DELETE", body=EVENT), 405,
         "method_not_allowed", methods=("DELETE",)),
]

CORPUS = BAD_BODIES + CONTENT_TYPES + TRANSPORTS + HEADERS + FORMS + METHODS


# ---- the test ------------------------------------------------------------------

def signed_event_runs(httpd):
    """The health probe: a good signed event is handled."""
    r, data = httpd.request("POST", "/hook", b"",
                            {"HTTP-HRFLOW-SIGNATURE": GOOD_SIGNATURE})
    assert r.status == 200, data
    assert json.loads(data)["handled"] == 1


def server_processes(httpd):
    """{pid: (parent pid, resident KiB)} of httpd and every process under
    it."""
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields["State"].strip().startswith("Z"):
            continue        # dead, not yet reaped
        procs[int(pid)] = (int(fields["PPid"]),
                           int(fields.get("VmRSS", "0 kB").split()[0]))
    top = int(open(os.path.join(httpd.root, "httpd.pid")).read())
    tree, grew = {top}, True
    while grew:
        more = {p for p, (pp, _) in procs.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return {p: procs[p] for p in tree if p in procs}


def children(httpd):
    top = int(open(os.path.join(httpd.root, "httpd.pid")).read())
    return {p for p, (pp, _) in server_processes(httpd).items() if pp == top}


def settle(httpd, before, no_answer, timeout=60):
    """After a case that failed: wait while a server process grows (one
    that never stops allocating dies at conftest's limit); then, if a
    process may have died, until the error log has been quiet for a
    moment (httpd notices a dead child once a second), so that nothing
    of this case is blamed on the next test."""
    mib = 1024
    deadline = time.time() + timeout
    sizes = {p: rss for p, (_, rss) in server_processes(httpd).items()}
    suspect = no_answer or max(sizes.values()) > 50 * mib
    while time.time() < deadline and max(sizes.values()) > 50 * mib:
        time.sleep(0.25)
        now = {p: rss for p, (_, rss) in server_processes(httpd).items()}
        if all(rss - sizes.get(p, 0) < 10 * mib for p, rss in now.items()):
            break
        sizes = now
    if not (suspect or before - children(httpd)):
        return
    log, quiet_since = None, time.time()
    while time.time() < deadline and time.time() - quiet_since < 1.5:
        text = httpd.error_log()
        if text != log:
            log, quiet_since = text, time.time()
        time.sleep(0.1)


def check_statuses(case, responses):
    expected = case.status if isinstance(case.status, list) else [case.status]
    got = [r.status for r in responses]
    assert len(got) == len(expected), \
        [(r.status, r.body[:200]) for r in responses]
    for want, status in zip(expected, got):
        assert status in (want if isinstance(want, set) else {want}), \
            [(r.status, r.body[:300]) for r in responses]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_hostile(httpd, out, case, request, expect_log):
    pending = httpd.front in case.pending
    expect_log(*case.log)
    if pending and SANITIZE:
        pytest.skip("fails today; a sanitized server has no memory bound")
    if pending:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.why))
    before = children(httpd)
    try:
        check_case(httpd, case, PENDING_TIMEOUT if pending else TIMEOUT)
    except Exception as e:
        if pending:     # what it broke must not fail the next test
            settle(httpd, before, isinstance(e, (OSError, NoAnswer)))
        raise
    signed_event_runs(httpd)


def check_case(httpd, case, timeout):
    responses = exchange(httpd.port, case.raw, case.methods, timeout,
                         case.shut, case.stop_after)
    if case.stop_after is not None:
        assert responses == []
        return
    if not responses:
        raise NoAnswer("the connection closed without an answer")
    check_statuses(case, responses)
    last = responses[-1]
    if case.status == 405 and case.methods[-1] != "TRACE":
        assert last.headers.get("allow") == "POST"
    if case.methods[-1] == "HEAD":
        assert last.body == b""
    elif case.json_body:
        answer = json.loads(last.body)
        errors = case.error if isinstance(case.error, set) else {case.error}
        assert answer.get("error") in errors, answer
