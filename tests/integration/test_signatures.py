"""Every signature variant of SPEC section 2, under every header name."""
import json

import pytest

from conftest import SECRETS, records
from hrflow_sign import HEADERS, body_signature, signed_value, variants

EVENT = {"type": "profile.parsing.success", "origin": "api",
         "message": "profile parsing succeed",
         "profile": {"key": "d82", "source": {"key": "d90"}}}
PAYLOAD = json.dumps(EVENT).encode()


def variant_id(v):
    url, pad, hexd, enc = v
    return ("url" if url else "std") + ("-pad" if pad else "-nopad") + \
        ("-hex" if hexd else "-raw") + ("-encoded" if enc else "-decoded")


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("variant", variants(), ids=variant_id)
def test_signed_payload_variant(httpd, out, header, variant):
    url, pad, hexd, enc = variant
    value = signed_value(SECRETS[0], PAYLOAD, url, pad, hexd, enc)
    # Header names are case-insensitive: send them in lower case.
    r, body = httpd.request("POST", "/hook", b"", {header.lower(): value})
    assert r.status == 200, body
    assert json.loads(body) == {"status": "ok", "events": 1, "handled": 1,
                                "ignored": 0}
    (run,) = records(out)
    assert run["stdin"] == PAYLOAD
    assert run["env"]["HRFLOW_SIGNATURE"] == "verified"
    assert run["env"]["HRFLOW_PROFILE_SOURCE_KEY"] == "d90"


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("form", ["hex", "sha256", "base64"])
def test_body_signature(httpd, out, header, form):
    body = json.dumps({"type": "job.storing.update", "job": {"key": "j1"}}).encode()
    r, answer = httpd.request("POST", "/hook", body, {
        "Content-Type": "application/json",
        header: body_signature(SECRETS[1], body, form)})
    assert r.status == 200, answer
    (run,) = records(out)
    assert run["env"]["HRFLOW_JOB_KEY"] == "j1"
    assert run["env"]["HRFLOW_SIGNATURE"] == "verified"


@pytest.mark.parametrize("secret", SECRETS)
def test_rotation_accepts_each_configured_secret(httpd, out, secret):
    r, _ = httpd.request("POST", "/hook", b"", {
        "HTTP-HRFLOW-SIGNATURE": signed_value(secret, PAYLOAD)})
    assert r.status == 200
    assert len(records(out)) == 1


def test_unknown_secret_refused(httpd, out):
    r, body = httpd.request("POST", "/hook", b"", {
        "HTTP-HRFLOW-SIGNATURE": signed_value("retired-secret", PAYLOAD)})
    assert r.status == 401
    assert json.loads(body) == {"status": "error", "error": "invalid_signature"}
    assert records(out) == []


def test_tampered_payload_refused(httpd, out):
    good = signed_value(SECRETS[0], PAYLOAD)
    other = signed_value(SECRETS[0], b'{"type":"job.parsing.success"}')
    forged = good.split(".")[0] + "." + other.split(".")[1]
    r, _ = httpd.request("POST", "/hook", b"", {"HRFLOW-SIGNATURE": forged})
    assert r.status == 401
    assert records(out) == []


def test_signed_payload_wins_over_body(httpd, out):
    decoy = json.dumps({"type": "job.parsing.error"}).encode()
    r, _ = httpd.request("POST", "/hook", decoy, {
        "Content-Type": "application/json",
        "HTTP-HRFLOW-SIGNATURE": signed_value(SECRETS[0], PAYLOAD)})
    assert r.status == 200
    (run,) = records(out)
    assert run["env"]["HRFLOW_TYPE"] == "profile.parsing.success"


def test_custom_header_is_the_only_one(httpd, out):
    value = signed_value(SECRETS[0], PAYLOAD)
    r, _ = httpd.request("POST", "/custom", b"", {"HTTP-HRFLOW-SIGNATURE": value})
    assert r.status == 401
    r, _ = httpd.request("POST", "/custom", b"", {"x-hook-signature": value})
    assert r.status == 200
    assert len(records(out)) == 1


def test_optional_accepts_unsigned_but_not_wrong(httpd, out):
    body = json.dumps(EVENT).encode()
    r, _ = httpd.request("POST", "/optional", body,
                         {"Content-Type": "application/json"})
    assert r.status == 200
    (run,) = records(out)
    assert run["env"]["HRFLOW_SIGNATURE"] == "unsigned"
    r, _ = httpd.request("POST", "/optional", body, {
        "Content-Type": "application/json", "HRFLOW-SIGNATURE": "0" * 64})
    assert r.status == 401
