#!/usr/bin/python3
"""Writes the hand-made seeds of tests/fuzz/corpus/TARGET/seed-* (the rest of
each corpus is what fuzzing found and `scripts/fuzz.sh minimize` kept).

    tests/fuzz/make_seeds.py

Seeds: every event form of SPEC section 1, every signature variant of
section 2 made with the fuzz targets' real secret, configs using every
directive the CGI reads, and spool files as hf_spool_envelope_encode writes them.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from hrflow_sign import body_signature, signed_value, variants  # noqa: E402

SECRET = "fuzz-secret"
HERE = os.path.dirname(os.path.abspath(__file__))

PROFILE = (b'{"type":"profile.parsing.success","origin":"api",'
           b'"message":"profile parsing succeed","profile":{"key":"d82",'
           b'"source":{"key":"d90"}},"tags":[{"name":"a","value":1.5},'
           b'{"name":"b","value":null}],"ok":true}')
JOB = (b'{ "type" : "job.storing.update",\n "job": {"key": "a", "board": '
       b'{"key": "b"}}, "n": -12e3, "s": "\\u00e9\\"\\\\\\/\\b\\f\\n\\r\\t"}')
ACTION = b'{"type":"action.stage.success","action":{"key":"x"}}'
LEGACY = b'{"type":"job.train.start","job":{"source":{"key":"s"}}}'
BATCH = b'[' + PROFILE + b', ' + JOB + b',\n' + ACTION + b']'
FORM = (b"type=profile.parsing.success&origin=api&message=profile+parsing+"
        b"succeed&profile=%7B%22key%22%3A+%22d82%22%2C+%22source%22%3A+%7B"
        b"%22key%22%3A+%22d90%22%7D%7D")
FORM_JOB = (b"type=job.scoring.error&job=%7B%22key%22%3A%22j%22%2C%22board"
            b"%22%3A%7B%22key%22%3A%22b%22%7D%7D&origin=api")
FORM_ACTION = b"type=action.rating.error&action=%7B%22key%22%3A%22r%22%7D"


def nested(depth):
    """An event whose deepest value is depth levels down (the event is 1)."""
    return (b'{"type":"profile.parsing.success","d":' + b'[' * (depth - 1)
            + b'1' + b']' * (depth - 1) + b'}')


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def receive():
    # byte 0: content type (0 json, 1 form, 2 json;charset, 3 text/plain),
    # 4: a signature line first, 8 * config (0 optional, 1 required, 2 off,
    # 3 small limits and its own header).
    for name, body in (("profile", PROFILE), ("job", JOB), ("action", ACTION),
                       ("legacy", LEGACY), ("batch", BATCH),
                       ("nested-32", nested(32))):
        write("receive", "json-" + name, b"\x00" + body)
    write("receive", "json-charset", b"\x02" + PROFILE)
    write("receive", "text-plain", b"\x03" + PROFILE)
    for name, body in (("profile", FORM), ("job", FORM_JOB),
                       ("action", FORM_ACTION)):
        write("receive", "form-" + name, b"\x01" + body)
    for i, (url, pad, hexd, enc) in enumerate(variants()):
        value = signed_value(SECRET, BATCH if i % 2 else PROFILE, url, pad,
                             hexd, enc).encode()
        write("receive", "signed-%02d" % i, bytes([4 + 8 * (i % 4)]) + value
              + b"\n")
    for form in ("hex", "sha256", "base64"):
        value = body_signature(SECRET, PROFILE, form).encode()
        write("receive", "body-signed-" + form,
              b"\x0c" + value + b"\n" + PROFILE)
    write("receive", "body-signed-form",
          b"\x05" + body_signature(SECRET, FORM).encode() + b"\n" + FORM)
    write("receive", "too-many-events",
          b"\x18" + b"[" + b",".join([ACTION] * 4) + b"]")
    write("receive", "wrong-signature", b"\x0c" + b"0" * 64 + b"\n" + PROFILE)


def signature():
    # byte 0 odd: the target signs the rest in variant byte0 >> 1.
    for v in range(0, 64, 2):
        write("signature", "variant-%02d" % v, bytes([v | 1]) + PROFILE)
    write("signature", "variant-empty", b"\x01")
    # byte 0 even: a header value line, then the body.
    for i, (url, pad, hexd, enc) in enumerate(variants()):
        write("signature", "received-%02d" % i, b"\x00" + signed_value(
            SECRET, JOB, url, pad, hexd, enc).encode() + b"\n")
    for form in ("hex", "sha256", "base64"):
        write("signature", "received-body-" + form, b"\x00" + body_signature(
            SECRET, JOB, form).encode() + b"\n" + JOB)


def json():
    for name, body in (("profile", PROFILE), ("job", JOB), ("batch", BATCH),
                       ("nested-32", nested(32)), ("nested-33", nested(33))):
        write("json", name, body)
    for name, body in (("number", b" -0.5e+7 "), ("string", b'"a\\ud83d\\ude00"'),
                       ("literals", b"[true,false,null]"), ("empty", b"{}"),
                       ("empty-array", b"[ ]"),
                       ("nested-arrays", b'[[1,[2]],{"a":[{}]},"]"]')):
        write("json", name, body)


def flatten():
    """Objects whose leaves json-c's tree and the text walk must agree on."""
    for name, body in (
            ("profile", PROFILE), ("job", JOB), ("action", ACTION),
            ("batch", BATCH), ("empty", b"{}"),
            ("escapes", b'{"s":"\\"\\\\\\/\\b\\f\\n\\r\\t",'
                        b'"u":"\\u00e9\\u20ac","nul":"a\\u0000b"}'),
            ("surrogates", b'{"a":"\\ud83d\\ude00","\\ud83d\\ude00":1,'
                           b'"odd":"\\ud836\\udc00"}'),
            ("numbers", b'{"z":-0,"d":1.0,"e":1e2,"E":-1.5E-3,'
                        b'"u":18446744073709551615,'
                        b'"i":-9223372036854775808,'
                        b'"m":9223372036854775807}'),
            ("containers", b'{"o":{},"a":[],"x":[[],{},[{}]],"t":true,'
                           b'"f":false,"n":null}'),
            ("duplicate", b'{"a":1,"b":{"c":1,"\\u0063":2},"a":3}'),
            ("type-last", b'{"type":"a.b.c","x":{"type":"d.e.f"},'
                          b'"\\u0074ype":"g.h.i"}'),
            ("long-name", b'{"' + b"p" * 1100 + b'":1,"q":[1,2],"r":"s"}'),
            ("nested-32", nested(32)),
            ("space", b' \t{"k" : [ 1 , "two" , { "three" : 3 } ] }\n')):
        write("flatten", name, body)


def conffile():
    write("conffile", "every-directive", b"""# every directive the CGI reads
SetHandler hrflow-webhook
HrflowSecret fuzz-secret
HrflowSecret "a secret with \\" a quote"
HrflowSecretFile secrets
HrflowSignature optional
HrflowSignatureHeader X-Hook-Signature
HrflowHandler profile.parsing.success handler --flag 'quoted arg'
HrflowHandler "*.error" handler
HrflowHandler job.* \\
    handler continued
HrflowTimeout 5
HrflowMaxBody 65536
HrflowMaxEvents 10
""")
    write("conffile", "required", b"HrflowSecretFile secrets\r\n"
          b"HrflowHandler * handler\r\n")
    write("conffile", "off", b"HrflowSignature off\nHrflowHandler * handler\n")
    write("conffile", "open-secret-file", b"HrflowSecretFile open-secrets\n")
    write("conffile", "server-only", b"HrflowSecret s\nHrflowSpool spool\n")
    write("conffile", "section", b"<Location hook>\nHrflowSecret s\n")


def envelope():
    head = (b'{"delivery_id":"0123456789abcdef0123456789abcdef","event_id":'
            b'"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"'
            b',"type":"%s","order_key":%s,"received":1795371791298842,'
            b'"attempt":%d,"next_attempt":%d,"last_result":%s,"index":%d,'
            b'"count":%d,"signature":"%s","timeout":30,"handler":[%s],\n'
            b'"event":%s}\n')
    write("envelope", "new", head % (
        b"profile.parsing.success", b'"profile:d82"', 0, 0, b"null", 0, 1,
        b"verified", b'"/usr/local/bin/on-profile"', PROFILE))
    write("envelope", "retry", head % (
        b"job.storing.update", b'"job:a"', 2, 1795371799000000,
        b'"exit 3"', 1, 3, b"unsigned",
        b'"/bin/echo","a \\"quoted\\" arg"', JOB))
    write("envelope", "name", b"1795371791298842-0000-"
          b"0123456789abcdef0123456789abcdef-1a2b3c4d.json")
    write("envelope", "name-no-key", b"1795371791298842-0003-"
          b"0123456789abcdef0123456789abcdef.json")


if __name__ == "__main__":
    receive()
    signature()
    json()
    flatten()
    conffile()
    envelope()
