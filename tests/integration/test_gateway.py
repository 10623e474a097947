"""Gateway mode (SPEC section 9): HrflowVerify on in front of real
applications -- php-fpm through mod_proxy_fcgi, a backend behind
mod_proxy_http, a CGI under mod_cgid, a static file -- each an echo of what
it received (gwfixture.py)."""
import concurrent.futures
import http.client
import json
import re
import socket
import time

import pytest

from conftest import SECRETS, records
from gwfixture import (ALL_KINDS, FORWARDED, KINDS, LIMITED, SMALL, gateway,
                       seen)
from hrflow_sign import HEADERS, body_signature, event_id, signed_value, \
    variants

assert gateway      # the module-scoped fixture, imported for pytest

EVENT = {"type": "profile.parsing.success", "origin": "api",
         "message": "profile parsing succeed",
         "profile": {"key": "d82", "source": {"key": "d90"}}}
PAYLOAD = json.dumps(EVENT).encode()
EVENT_VARS = {"HRFLOW_TYPE": "profile.parsing.success",
              "HRFLOW_ORIGIN": "api",
              "HRFLOW_MESSAGE": "profile parsing succeed",
              "HRFLOW_PROFILE_KEY": "d82", "HRFLOW_PROFILE_SOURCE_KEY": "d90"}
SEED_FORM = (b"type=profile.parsing.success&origin=api&message=profile+parsing"
             b"+succeed&profile=%7B%22key%22%3A+%22d82a7fd1b7ba47ee9a5ad7c8c3c"
             b"8cb4d%22%2C+%22source%22%3A+%7B%22key%22%3A+%22d90a8b6ee5d2ef4"
             b"e1c8a6de0f32bfa0d%22%7D%7D")
SEED_VARS = {"HRFLOW_TYPE": "profile.parsing.success", "HRFLOW_ORIGIN": "api",
             "HRFLOW_MESSAGE": "profile parsing succeed",
             "HRFLOW_PROFILE_KEY": "d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d",
             "HRFLOW_PROFILE_SOURCE_KEY": "d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"}
FULL_TEXT = (b'{"type": "profile.scoring.error", "origin": "api", '
             b'"message": "m", "profile": {"key": "p1", "source": {"key": "s1"}},'
             b' "job": {"key": "j1", "board": {"key": "b1"}},'
             b' "tags": [{"name": "a"}, {"name": "b"}], "score": 0.75,'
             b' "ok": true, "none": null}')
FULL_VARS = {"HRFLOW_TYPE": "profile.scoring.error", "HRFLOW_ORIGIN": "api",
             "HRFLOW_MESSAGE": "m", "HRFLOW_PROFILE_KEY": "p1",
             "HRFLOW_PROFILE_SOURCE_KEY": "s1", "HRFLOW_JOB_KEY": "j1",
             "HRFLOW_JOB_BOARD_KEY": "b1", "HRFLOW_TAGS_0_NAME": "a",
             "HRFLOW_TAGS_1_NAME": "b", "HRFLOW_SCORE": "0.75",
             "HRFLOW_OK": "true", "HRFLOW_NONE": ""}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def event_vars(payload_vars, text, count=1, signature="verified"):
    """Every variable the first event of a delivery gives, but
    HRFLOW_DELIVERY_ID (unique)."""
    obj, action, status = payload_vars["HRFLOW_TYPE"].split(".")
    return dict(payload_vars, HRFLOW_EVENT_OBJECT=obj,
                HRFLOW_EVENT_ACTION=action, HRFLOW_EVENT_STATUS=status,
                HRFLOW_EVENT_ID=event_id(text), HRFLOW_EVENT_INDEX="0",
                HRFLOW_EVENT_COUNT=str(count), HRFLOW_SIGNATURE=signature)


def signed(body, ctype=JSON, secret=SECRETS[0], header=HEADERS[0],
           form="hex"):
    """Headers of a body signed as a whole."""
    h = {header: body_signature(secret, body, form)}
    if ctype:
        h["Content-Type"] = ctype
    return h


def padded(size, kind=b"profile.parsing.success"):
    """A JSON event of exactly size bytes."""
    head = b'{"type":"' + kind + b'","pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def padded_vars(size):
    """padded(size)'s variables: HRFLOW_PAD while it fits in the 64 KiB
    that an event's payload variables may take (SPEC section 4)."""
    pad = size - len(padded(0))
    v = {"HRFLOW_TYPE": "profile.parsing.success"}
    if len("HRFLOW_TYPE" "profile.parsing.success" "HRFLOW_PAD") + pad \
            <= 65536:
        v["HRFLOW_PAD"] = "x" * pad
    return v


def chunks(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


def check_seen(kind, s, body, ctype, expected_vars):
    """What the application got: exactly body, with its length, ctype, no
    Transfer-Encoding, expected_vars (the backend: those forwarded), a
    delivery id, no HRFLOW_ATTEMPT, and no secret anywhere."""
    assert s["body"] == body
    assert s["content_length"] == str(len(body))
    assert s["transfer_encoding"] is None
    assert not s["chunked"]
    assert s["content_type"] == ctype
    got = dict(s["vars"])
    delivery = got.pop("HRFLOW_DELIVERY_ID", "")
    assert re.fullmatch(r"[0-9a-f]{32}", delivery), s["vars"]
    if kind == "backend":
        expected_vars = {k: v for k, v in expected_vars.items()
                         if k in FORWARDED and v}
        # The README's recipe for a proxied application.
        assert s["event_id_header"] == expected_vars["HRFLOW_EVENT_ID"]
        assert "transfer-encoding" not in s["header_names"]
    assert got == expected_vars
    for secret in SECRETS:
        assert secret not in s["text"]


def pass_through(gw, kind, conf, body, headers, expect_body, expect_ctype,
                 expect_vars):
    """A request the gateway lets through: the application ran once and
    got exactly what it should."""
    before = len(gw.runs(kind))
    r, data = gw.request("POST", kind, conf, body, headers)
    assert r.status == 200, data[:2000]
    assert len(gw.runs(kind)) == before + 1
    s = seen(kind, data)
    check_seen(kind, s, expect_body, expect_ctype, expect_vars)
    return s


def refused(gw, kind, conf, status, error, method="POST", body=b"",
            headers=None):
    """A request the gateway answers itself: the endpoint's status and
    JSON, and the application never ran."""
    before = len(gw.runs(kind))
    r, data = gw.request(method, kind, conf, body, headers or {})
    assert r.status == status, data[:2000]
    if method != "HEAD":
        assert r.getheader("Content-Type") == JSON
        assert json.loads(data) == {"status": "error", "error": error}
    assert len(gw.runs(kind)) == before
    return r


# ---- what passes ------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", variants(),
                         ids=lambda v: "-".join(
                             ("url" if v[0] else "std",
                              "pad" if v[1] else "nopad",
                              "hex" if v[2] else "raw",
                              "encoded" if v[3] else "decoded")))
def test_signed_payload_variant(gateway, kind, variant):
    """SIG.PAYLOAD in every variant, no body: the application gets the
    payload as a JSON body."""
    value = signed_value(SECRETS[0], PAYLOAD, *variant)
    pass_through(gateway, kind, "hook", b"", {HEADERS[0].lower(): value},
                 PAYLOAD, JSON, event_vars(EVENT_VARS, PAYLOAD))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", HEADERS)
def test_payload_under_each_header_and_secret(gateway, kind, header):
    for secret in SECRETS:
        pass_through(gateway, kind, "hook", b"",
                     {header: signed_value(secret, PAYLOAD)},
                     PAYLOAD, JSON, event_vars(EVENT_VARS, PAYLOAD))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("form", ["hex", "sha256", "base64"])
def test_body_signature(gateway, kind, header, form):
    """A body signed as a whole reaches the application byte for byte."""
    body = json.dumps({"type": "job.storing.update",
                       "job": {"key": "j1"}}).encode()
    pass_through(gateway, kind, "hook", body,
                 signed(body, JSON, SECRETS[1], header, form), body, JSON,
                 event_vars({"HRFLOW_TYPE": "job.storing.update",
                             "HRFLOW_JOB_KEY": "j1"}, body))


@pytest.mark.parametrize("kind", KINDS)
def test_json_object_exact_variables(gateway, kind):
    ctype = "application/json; charset=utf-8"
    pass_through(gateway, kind, "hook", FULL_TEXT, signed(FULL_TEXT, ctype),
                 FULL_TEXT, ctype, event_vars(FULL_VARS, FULL_TEXT))


@pytest.mark.parametrize("kind", KINDS)
def test_seed_form_body(gateway, kind, out):
    """The seed's form body, byte for byte; the variables are those the
    module's own endpoint gives its handler (same event id)."""
    r, data = gateway.httpd.request("POST", "/endpoint", SEED_FORM,
                                    signed(SEED_FORM, FORM))
    assert r.status == 200, data
    (run,) = records(out)
    s = pass_through(gateway, kind, "hook", SEED_FORM,
                     signed(SEED_FORM, FORM), SEED_FORM, FORM,
                     event_vars(SEED_VARS, run["stdin"]))
    if kind == "php":
        # PHP parses the form itself: every field intact.
        profile = s["post"].pop("profile")
        assert s["post"] == {"type": "profile.parsing.success",
                             "origin": "api",
                             "message": "profile parsing succeed"}
        assert json.loads(profile) == {
            "key": "d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d",
            "source": {"key": "d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"}}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body,ctype", [
    (b'{"type":"job.parsing.error","job":{"key":"evil"}}', JSON),
    (b"type=job.parsing.error&origin=x&message=m&job=%7B%7D", FORM),
    (b"anything at all " * 40, "text/plain"),
    (b"", None),
], ids=["json", "form", "text", "empty"])
def test_signed_payload_replaces_the_body(gateway, kind, body, ctype):
    """With SIG.PAYLOAD the body is not trusted: the application gets the
    payload instead, as application/json with its length."""
    headers = {"HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], PAYLOAD)}
    if ctype:
        headers["Content-Type"] = ctype
    s = pass_through(gateway, kind, "hook", body, headers, PAYLOAD, JSON,
                     event_vars(EVENT_VARS, PAYLOAD))
    assert b"evil" not in s["text"].encode()


@pytest.mark.parametrize("kind", KINDS)
def test_signed_payload_drops_the_bodys_content_encoding(gateway, kind):
    """The payload is plain JSON: a Content-Encoding that came with the
    replaced body does not come with it."""
    headers = {"HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], PAYLOAD),
               "Content-Type": JSON, "Content-Encoding": "x-sender-coding"}
    s = pass_through(gateway, kind, "hook", b"\x1f\x8b\x08 not json",
                     headers, PAYLOAD, JSON, event_vars(EVENT_VARS, PAYLOAD))
    assert "x-sender-coding" not in s["text"]


@pytest.mark.parametrize("kind", KINDS)
def test_signed_payload_replaces_a_chunked_body(gateway, kind):
    body = b'{"type":"job.parsing.error","job":{"key":"evil"}}' * 2000
    headers = {"HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], PAYLOAD),
               "Content-Type": JSON, "Transfer-Encoding": "chunked"}
    pass_through(gateway, kind, "hook", iter(chunks(body, 8192)), headers,
                 PAYLOAD, JSON, event_vars(EVENT_VARS, PAYLOAD))


@pytest.mark.parametrize("kind", KINDS)
def test_batch_gives_the_first_event(gateway, kind, out):
    events = [{"type": t, "profile": {"key": str(i)}} for i, t in enumerate(
        ["profile.storing.update", "profile.parsing.success",
         "action.stage.success"])]
    texts = [json.dumps(e).encode() for e in events]
    body = b"[" + b", ".join(texts) + b"]"
    pass_through(gateway, kind, "hook", body, signed(body), body, JSON,
                 event_vars({"HRFLOW_TYPE": "profile.storing.update",
                             "HRFLOW_PROFILE_KEY": "0"}, texts[0], count=3))
    # The module's endpoint names the first event alike.
    r, _ = gateway.httpd.request("POST", "/endpoint", body, signed(body))
    assert r.status == 200
    assert records(out)[0]["env"]["HRFLOW_EVENT_ID"] == event_id(texts[0])


@pytest.mark.parametrize("kind", KINDS)
def test_signed_batch_payload(gateway, kind):
    events = [{"type": "job.train.start"}, {"type": "action.rating.error"}]
    payload = json.dumps(events).encode()
    pass_through(gateway, kind, "hook", b"",
                 {"HRFLOW-SIGNATURE": signed_value(SECRETS[0], payload)},
                 payload, JSON,
                 event_vars({"HRFLOW_TYPE": "job.train.start"},
                            json.dumps(events[0]).encode(), count=2))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size,piece", [(150, 7), (700000, 65536)],
                         ids=["small", "large"])
def test_chunked_body_arrives_with_its_length(gateway, kind, size, piece):
    """A chunked request reaches the application with Content-Length and
    no Transfer-Encoding (a chunked body to php-fpm would be lost: PHP reads
    nothing without CONTENT_LENGTH)."""
    body = padded(size)
    headers = signed(body)
    headers["Transfer-Encoding"] = "chunked"
    pass_through(gateway, kind, "hook", iter(chunks(body, piece)), headers,
                 body, JSON, event_vars(padded_vars(size), body))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_body_at_the_limit_passes_one_byte_over_is_413(gateway, kind,
                                                       chunked):
    for size, status in ((SMALL, 200), (SMALL + 1, 413)):
        body = padded(size)
        headers = signed(body)
        send = body
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
            send = iter(chunks(body, 100))
        if status == 200:
            pass_through(gateway, kind, "small", send, headers, body, JSON,
                         event_vars(padded_vars(size), body))
        else:
            refused(gateway, kind, "small", 413, "body_too_large",
                    body=send, headers=headers)


@pytest.mark.parametrize("kind", KINDS)
def test_one_mebibyte_passes_byte_for_byte(gateway, kind):
    """HrflowMaxBody's default, 1 MiB, exactly: mod_proxy_http must not
    switch to chunked, php-fpm and the CGI must get every byte."""
    body = padded(1 << 20)
    pass_through(gateway, kind, "hook", body, signed(body), body, JSON,
                 event_vars(padded_vars(1 << 20), body))


@pytest.mark.parametrize("kind", KINDS)
def test_a_resend_has_the_same_event_id_and_a_new_delivery_id(gateway,
                                                              kind):
    value = signed_value(SECRETS[0], PAYLOAD)
    first, again = (pass_through(gateway, kind, "hook", b"",
                                 {HEADERS[0]: value}, PAYLOAD, JSON,
                                 event_vars(EVENT_VARS, PAYLOAD))
                    for _ in range(2))
    assert first["vars"]["HRFLOW_DELIVERY_ID"] != \
        again["vars"]["HRFLOW_DELIVERY_ID"]


@pytest.mark.parametrize("kind", KINDS)
def test_optional_signature(gateway, kind):
    """HrflowSignature optional: unsigned passes as unsigned, signed as
    verified, a wrong signature is still refused."""
    pass_through(gateway, kind, "optional", PAYLOAD, {"Content-Type": JSON},
                 PAYLOAD, JSON,
                 event_vars(EVENT_VARS, PAYLOAD, signature="unsigned"))
    pass_through(gateway, kind, "optional", PAYLOAD, signed(PAYLOAD),
                 PAYLOAD, JSON, event_vars(EVENT_VARS, PAYLOAD))
    refused(gateway, kind, "optional", 401, "invalid_signature",
            body=PAYLOAD, headers=signed(PAYLOAD, secret="not-the-secret"))


@pytest.mark.parametrize("kind", KINDS)
def test_signature_header_directive(gateway, kind):
    """HrflowSignatureHeader: only that header counts."""
    pass_through(gateway, kind, "custom", PAYLOAD,
                 signed(PAYLOAD, header="X-Hook-Signature"), PAYLOAD, JSON,
                 event_vars(EVENT_VARS, PAYLOAD))
    refused(gateway, kind, "custom", 401, "missing_signature", body=PAYLOAD,
            headers=signed(PAYLOAD, header=HEADERS[0]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["rewrite", "rewrite-hook"],
                         ids=["to-plain", "to-verified"])
def test_internal_redirect_keeps_body_and_variables(gateway, kind, target):
    """mod_rewrite in the gateway's section redirects internally to another
    URL of the application (one without the gateway, or one with it): the
    application still gets the verified body and the variables."""
    body = json.dumps({"type": "job.storing.update",
                       "job": {"key": "r1"}}).encode()
    s = pass_through(gateway, kind, target, body, signed(body), body, JSON,
                     event_vars({"HRFLOW_TYPE": "job.storing.update",
                                 "HRFLOW_JOB_KEY": "r1"}, body))
    where = "plain" if target == "rewrite" else "hook"
    assert s["script"].startswith(f"/{kind}/{where}/")


@pytest.mark.parametrize("kind", KINDS)
def test_internal_redirect_into_stricter_rules(gateway, kind):
    """A verified request redirected into a gateway section of other rules
    (HrflowMaxBody 600, HrflowMaxEvents 2) is checked again against them."""
    for size, status in ((SMALL, 200), (SMALL + 1, 413)):
        body = padded(size)
        if status == 200:
            s = pass_through(gateway, kind, "rewrite-small", body,
                             signed(body), body, JSON,
                             event_vars(padded_vars(size), body))
            assert s["script"].startswith(f"/{kind}/small/")
        else:
            refused(gateway, kind, "rewrite-small", 413, "body_too_large",
                    body=body, headers=signed(body))
    refused(gateway, kind, "rewrite-small", 413, "too_many_events",
            body=BATCH3, headers=signed(BATCH3))


def test_directory_index_under_php_fpm(gateway):
    """Debian's way to PHP (<FilesMatch> to php-fpm) and a folder's
    index.php found by mod_dir: the body and variables get there."""
    before = len(gateway.runs("php"))
    r, data = gateway.httpd.request("POST", "/php/index/", PAYLOAD,
                                    signed(PAYLOAD))
    assert r.status == 200, data[:2000]
    s = seen("php", data)
    assert s["script"] == "/php/index/index.php"
    check_seen("php", s, PAYLOAD, JSON, event_vars(EVENT_VARS, PAYLOAD))
    assert len(gateway.runs("php")) == before + 1
    before += 1
    r, data = gateway.httpd.request("POST", "/php/index/", PAYLOAD,
                                    {"Content-Type": JSON})
    assert (r.status, json.loads(data)) == (
        401, {"status": "error", "error": "missing_signature"})
    assert len(gateway.runs("php")) == before


def test_forwarded_headers_replace_the_clients(gateway):
    """RequestHeader set: a client's own Hrflow-Event-Id never reaches the
    backend, only the verified event's."""
    headers = signed(PAYLOAD)
    headers.update({"Hrflow-Event-Id": "forged",
                    "X-Hrflow-Var-Type": "job.forged.success",
                    "X-Hrflow-Var-Attempt": "7"})
    s = pass_through(gateway, "backend", "hook", PAYLOAD, headers, PAYLOAD,
                     JSON, event_vars(EVENT_VARS, PAYLOAD))
    assert "forged" not in s["text"]


def test_static_file_behind_the_gateway(gateway):
    """The core's default handler: a verified POST gets its answer, a
    refused one the endpoint's."""
    body = json.dumps({"type": "job.storing.update"}).encode()
    r, data = gateway.request("POST", "static", "hook", body, signed(body))
    assert (r.status, data) == (200, b"static\n")
    refused(gateway, "static", "hook", 401, "missing_signature", body=body,
            headers={"Content-Type": JSON})


@pytest.mark.parametrize("kind", KINDS)
def test_requests_on_one_connection(gateway, kind):
    """Keep-alive: each request gets its own body, verified or not."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.httpd.port,
                                      timeout=60)
    try:
        for i, conf in enumerate(["hook", "plain", "hook", "hook"]):
            body = json.dumps({"type": "job.storing.update",
                               "job": {"key": f"k{i}"}}).encode()
            headers = signed(body) if i != 2 else {"Content-Type": JSON}
            conn.request("POST", gateway.url(kind, conf), body, headers)
            r = conn.getresponse()
            data = r.read()
            if i == 2:
                assert r.status == 401
                continue
            assert r.status == 200, data
            s = seen(kind, data)
            assert s["body"] == body
            assert s["content_length"] == str(len(body))
    finally:
        conn.close()


# ---- what is refused --------------------------------------------------------

BAD_JSON = b'{"type":'
BATCH3 = json.dumps([{"type": "a.b.c"}] * 3).encode()
REFUSALS = [
    # name, conf, method, body, headers, status, error
    ("unsigned", "hook", "POST", PAYLOAD, {"Content-Type": JSON},
     401, "missing_signature"),
    ("wrong_body_signature", "hook", "POST", PAYLOAD,
     signed(PAYLOAD, secret="retired-secret"), 401, "invalid_signature"),
    ("wrong_payload_signature", "hook", "POST", b"",
     {"HTTP-HRFLOW-SIGNATURE": signed_value("retired-secret", PAYLOAD)},
     401, "invalid_signature"),
    ("tampered_body", "hook", "POST", PAYLOAD + b" ",
     signed(PAYLOAD), 401, "invalid_signature"),
    ("bad_json", "hook", "POST", BAD_JSON, signed(BAD_JSON), 400,
     "invalid_json"),
    ("empty_batch", "hook", "POST", b"[]", signed(b"[]"), 400,
     "empty_batch"),
    ("bad_type", "hook", "POST", b'{"type":"Profile.X"}',
     signed(b'{"type":"Profile.X"}'), 400, "invalid_type"),
    ("bad_form", "hook", "POST", b"type=a.b.c&profile=%7Bnot",
     signed(b"type=a.b.c&profile=%7Bnot", FORM), 400, "invalid_form"),
    ("media_type", "hook", "POST", PAYLOAD, signed(PAYLOAD, "text/plain"),
     415, "unsupported_media_type"),
    ("no_media_type", "hook", "POST", PAYLOAD, signed(PAYLOAD, None),
     415, "unsupported_media_type"),
    ("too_large", "small", "POST", padded(SMALL + 1),
     signed(padded(SMALL + 1)), 413, "body_too_large"),
    ("too_large_default", "hook", "POST", padded((1 << 20) + 1),
     signed(padded((1 << 20) + 1)), 413, "body_too_large"),
    ("too_many_events", "small", "POST", BATCH3, signed(BATCH3), 413,
     "too_many_events"),
    ("bad_base64_payload", "hook", "POST", b"",
     {"HTTP-HRFLOW-SIGNATURE": body_signature(SECRETS[0], b"eyJ0eXBlIjoi*bad",
                                              "base64") + ".eyJ0eXBlIjoi*bad"},
     400, "invalid_base64"),
    ("too_many_events_payload", "small", "POST", b"",
     {"HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], BATCH3)}, 413,
     "too_many_events"),
    ("get", "hook", "GET", b"", {}, 405, "method_not_allowed"),
    ("head", "hook", "HEAD", b"", {}, 405, "method_not_allowed"),
    ("put", "hook", "PUT", PAYLOAD, signed(PAYLOAD), 405,
     "method_not_allowed"),
    ("get_optional", "optional", "GET", b"", {}, 405, "method_not_allowed"),
    # The order of the checks: method, size, signature, content type.
    ("order_method_first", "small", "GET", b"", {"HRFLOW-SIGNATURE": "x"},
     405, "method_not_allowed"),
    ("order_size_before_signature", "small", "POST", padded(SMALL + 1),
     {"Content-Type": JSON}, 413, "body_too_large"),
    ("order_signature_before_type", "hook", "POST", PAYLOAD,
     {"Content-Type": "text/plain"}, 401, "missing_signature"),
]


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refused_before_the_application(gateway, kind, case):
    _, conf, method, body, headers, status, error = case
    r = refused(gateway, kind, conf, status, error, method, body, headers)
    if status == 405:
        assert r.getheader("Allow") == "POST"


@pytest.mark.parametrize("kind", KINDS)
def test_refused_chunked_over_the_limit(gateway, kind):
    body = padded(SMALL * 3)
    headers = signed(body)
    headers["Transfer-Encoding"] = "chunked"
    refused(gateway, kind, "small", 413, "body_too_large",
            body=iter(chunks(body, 64)), headers=headers)


def test_fixture_backend_sees_chunked_bodies(gateway):
    """The echo backend would see a chunked body: without the gateway,
    mod_proxy_http streams a large chunked request as it came."""
    body = padded(300000)
    r, data = gateway.request("POST", "backend", "plain",
                              iter(chunks(body, 65536)),
                              {"Content-Type": JSON,
                               "Transfer-Encoding": "chunked"})
    s = seen("backend", data)
    assert s["chunked"] and s["body"] == body
    assert s["transfer_encoding"] == "chunked"
    assert s["content_length"] is None


def test_fixture_applications_without_the_gateway(gateway):
    """Without HrflowVerify the applications get no HRFLOW_* variable (the
    tests' checks of them are not vacuous), and php-fpm loses a chunked
    body (why the gateway passes a length on)."""
    for kind in KINDS:
        r, data = gateway.request("POST", kind, "plain", PAYLOAD,
                                  signed(PAYLOAD))
        s = seen(kind, data)
        assert s["body"] == PAYLOAD and s["vars"] == {}
    body = padded(300000)
    r, data = gateway.request("POST", "php", "plain",
                              iter(chunks(body, 65536)),
                              {"Content-Type": JSON,
                               "Transfer-Encoding": "chunked"})
    assert seen("php", data)["body"] == b""


# ---- more directives ----------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_secret_file(gateway, kind):
    """HrflowSecretFile: its secret (the second) verifies, no other."""
    pass_through(gateway, kind, "secretfile", PAYLOAD,
                 signed(PAYLOAD, secret=SECRETS[1]), PAYLOAD, JSON,
                 event_vars(EVENT_VARS, PAYLOAD))
    refused(gateway, kind, "secretfile", 401, "invalid_signature",
            body=PAYLOAD, headers=signed(PAYLOAD, secret=SECRETS[0]))


@pytest.mark.parametrize("kind", KINDS)
def test_signature_off(gateway, kind):
    """HrflowSignature off: nothing is verified, everything is unsigned,
    a bad body is still refused."""
    pass_through(gateway, kind, "off", PAYLOAD,
                 signed(PAYLOAD, secret="anything"), PAYLOAD, JSON,
                 event_vars(EVENT_VARS, PAYLOAD, signature="unsigned"))
    refused(gateway, kind, "off", 400, "invalid_json", body=BAD_JSON,
            headers={"Content-Type": JSON})


# ---- the connection itself ----------------------------------------------------

def exchange(gw, head, body=b"", expect_continue=False, timeout=10):
    """A request written by hand: its head, then (after the interim 100
    Continue when expect_continue) its body; the server's answer, read to
    its end (or to the end of the connection)."""
    s = socket.create_connection(("127.0.0.1", gw.httpd.port), timeout)
    try:
        s.sendall(head)
        got = b""
        if expect_continue:
            while b"\r\n\r\n" not in got:
                data = s.recv(65536)
                if not data:
                    break
                got += data
            if not got.startswith(b"HTTP/1.1 100 "):
                return read_answer(s, got)
        s.sendall(body)
        return read_answer(s, got)
    finally:
        s.close()


def read_answer(s, got):
    """got and what follows on s, up to the end of the final answer."""
    while True:
        final = got
        while final.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in final:
            final = final.split(b"\r\n\r\n", 1)[1]
        if b"\r\n\r\n" in final:
            head, _, rest = final.partition(b"\r\n\r\n")
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if m and len(rest) >= int(m.group(1)):
                return got
            if re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I) \
                    and rest.endswith(b"0\r\n\r\n"):
                return got
        data = s.recv(65536)
        if not data:
            return got
        got += data


def split_answer(raw):
    """(status, headers dict in lower case, body) of a raw answer, after
    any interim 100 Continue."""
    while raw.startswith(b"HTTP/1.1 100 "):
        raw = raw.split(b"\r\n\r\n", 1)[1]
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict((k.lower(), v.strip()) for k, v in
                   (x.split(":", 1) for x in lines[1:]))
    if headers.get("transfer-encoding") == "chunked":
        out = b""
        while True:
            size, _, body = body.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, body = out + body[:n], body[n + 2:]
        body = out
    return int(lines[0].split()[1]), headers, body


def post_head(gw, kind, conf, length, headers=()):
    lines = [f"POST {gw.url(kind, conf)} HTTP/1.1", "Host: 127.0.0.1",
             f"Content-Length: {length}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("kind", KINDS)
def test_expect_100_continue(gateway, kind):
    """curl's way with bodies over 1 KiB: the body comes after the 100
    Continue that reading it sends."""
    body = padded(5000)
    head = post_head(gateway, kind, "hook", len(body), [
        "Content-Type: application/json", "Expect: 100-continue",
        f"{HEADERS[0]}: {body_signature(SECRETS[0], body)}"])
    before = len(gateway.runs(kind))
    raw = exchange(gateway, head, body, expect_continue=True)
    assert raw.startswith(b"HTTP/1.1 100 "), raw[:200]
    status, _, data = split_answer(raw)
    assert status == 200, data[:500]
    check_seen(kind, seen(kind, data), body, JSON,
               event_vars(padded_vars(5000), body))
    assert len(gateway.runs(kind)) == before + 1


@pytest.mark.parametrize("kind", KINDS)
def test_expect_100_continue_over_the_limit(gateway, kind):
    """A Content-Length over HrflowMaxBody is refused before reading: no
    100 Continue, the body need not be sent."""
    before = len(gateway.runs(kind))
    raw = exchange(gateway, post_head(gateway, kind, "small", SMALL + 1, [
        "Content-Type: application/json", "Expect: 100-continue",
        f"{HEADERS[0]}: 00"]), expect_continue=True)
    status, _, data = split_answer(raw)
    assert not raw.startswith(b"HTTP/1.1 100 ")
    assert (status, json.loads(data)) == (413, {"status": "error",
                                                "error": "body_too_large"})
    assert len(gateway.runs(kind)) == before


@pytest.mark.parametrize("kind", KINDS)
def test_broken_chunked_body(gateway, kind):
    before = len(gateway.runs(kind))
    body = padded(100)
    head = ("\r\n".join([f"POST {gateway.url(kind, 'hook')} HTTP/1.1",
                         "Host: 127.0.0.1", "Transfer-Encoding: chunked",
                         "Content-Type: application/json",
                         f"{HEADERS[0]}: {body_signature(SECRETS[0], body)}",
                         "Connection: close"]) + "\r\n\r\n").encode()
    raw = exchange(gateway, head, b"10\r\n" + body[:16] + b"\r\nzz\r\n")
    status, headers, data = split_answer(raw)
    assert status == 400, raw[:500]
    assert headers["content-type"] == JSON, raw[:500]
    assert json.loads(data) == {"status": "error", "error": "unreadable_body"}
    assert len(gateway.runs(kind)) == before


@pytest.mark.parametrize("kind", KINDS)
def test_body_over_limit_request_body(gateway, kind):
    """httpd's own LimitRequestBody, below HrflowMaxBody, applies too."""
    body = padded(LIMITED + 1)
    refused(gateway, kind, "limited", 413, "body_too_large", body=body,
            headers=signed(body))


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_body_over_limit_request_body(gateway, kind):
    """httpd's own LimitRequestBody, below HrflowMaxBody, stops a chunked
    body inside its input filter: the answer is still the endpoint's.  In
    front of mod_proxy too, as with a Content-Length (httpd's input filter
    leaves the limit to a reverse proxy, r->proxyreq, but the gateway is the
    one that reads the body)."""
    before = len(gateway.runs(kind))
    body = padded(LIMITED + 100)
    head = ("\r\n".join([f"POST {gateway.url(kind, 'limited')} HTTP/1.1",
                         "Host: 127.0.0.1", "Transfer-Encoding: chunked",
                         "Content-Type: application/json",
                         f"{HEADERS[0]}: {body_signature(SECRETS[0], body)}",
                         "Connection: close"]) + "\r\n\r\n").encode()
    raw = exchange(gateway, head, b"".join(
        b"%x\r\n%s\r\n" % (len(c), c) for c in chunks(body, 100))
        + b"0\r\n\r\n")
    status, headers, data = split_answer(raw)
    assert status == 413, raw[:500]
    assert headers["content-type"] == JSON, raw[:500]
    assert json.loads(data) == {"status": "error", "error": "body_too_large"}
    assert len(gateway.runs(kind)) == before


@pytest.mark.parametrize("kind", KINDS)
def test_client_gone_mid_body(gateway, kind):
    """The client stops sending and closes: the application never runs."""
    before = len(gateway.runs(kind))
    body = padded(4000)
    s = socket.create_connection(("127.0.0.1", gateway.httpd.port), 10)
    s.sendall(post_head(gateway, kind, "hook", len(body), [
        "Content-Type: application/json",
        f"{HEADERS[0]}: {body_signature(SECRETS[0], body)}"])
              + body[:1000])
    time.sleep(0.1)
    s.close()
    # The server notices at once; give it time to run an application it
    # should not run.
    time.sleep(0.5)
    assert len(gateway.runs(kind)) == before


@pytest.mark.expect_log(r"AH01630: client denied by server configuration")
def test_access_control_refuses_before_the_body(gateway):
    """Require refuses first, and the gateway reads no body for it: a
    client that waits for 100 Continue gets the 403 instead (reading the
    body would have sent the 100 Continue)."""
    before = len(gateway.runs("php"))
    raw = exchange(gateway, post_head(gateway, "php", "denied", 1000, [
        "Content-Type: application/json", "Expect: 100-continue",
        f"{HEADERS[0]}: 00"]), expect_continue=True, timeout=5)
    assert raw.startswith(b"HTTP/1.1 403 "), raw[:300]
    assert len(gateway.runs("php")) == before


def test_concurrent_requests_each_get_their_own_body(gateway):
    """Requests at once on every application: no body or variable crosses
    from one request to another."""
    def one(i):
        kind = KINDS[i % len(KINDS)]
        body = json.dumps({"type": "job.storing.update",
                           "job": {"key": f"c{i}"},
                           "pad": "y" * (i * 997 % 20000)}).encode()
        r, data = gateway.request("POST", kind, "hook", body, signed(body))
        assert r.status == 200, data[:500]
        s = seen(kind, data)
        assert s["body"] == body
        assert s["content_length"] == str(len(body))
        assert s["vars"]["HRFLOW_JOB_KEY"] == f"c{i}"
        assert s["vars"]["HRFLOW_EVENT_ID"] == event_id(body)
        return i
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        assert sorted(pool.map(one, range(48))) == list(range(48))
