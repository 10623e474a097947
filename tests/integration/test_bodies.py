"""Every body form of SPEC section 1, producing exactly SPEC 4's variables."""
import json
import os
import time
import urllib.parse

import pytest

from conftest import SECRETS, records
from hrflow_sign import body_signature, event_id, signed_value

SEED_FORM = (b"type=profile.parsing.success&origin=api&message=profile+parsing"
             b"+succeed&profile=%7B%22key%22%3A+%22d82a7fd1b7ba47ee9a5ad7c8c3c"
             b"8cb4d%22%2C+%22source%22%3A+%7B%22key%22%3A+%22d90a8b6ee5d2ef4"
             b"e1c8a6de0f32bfa0d%22%7D%7D")
EVENT_VARS = {"HRFLOW_EVENT_OBJECT", "HRFLOW_EVENT_ACTION", "HRFLOW_EVENT_STATUS",
              "HRFLOW_EVENT_ID", "HRFLOW_DELIVERY_ID", "HRFLOW_EVENT_INDEX",
              "HRFLOW_EVENT_COUNT", "HRFLOW_SIGNATURE", "HRFLOW_ATTEMPT"}


def post_signed(httpd, path, body, content_type):
    return httpd.request("POST", path, body, {
        "Content-Type": content_type,
        "HTTP-HRFLOW-SIGNATURE": body_signature(SECRETS[0], body)})


def hrflow_vars(env):
    return {k: v for k, v in env.items() if k.startswith("HRFLOW_")}


def test_seed_form_body(httpd, out, scratch):
    r, body = post_signed(httpd, "/hook", SEED_FORM,
                          "application/x-www-form-urlencoded")
    assert r.status == 200, body
    (run,) = records(out)
    v = hrflow_vars(run["env"])
    payload = {k: v[k] for k in v if k not in EVENT_VARS}
    assert payload == {
        "HRFLOW_TYPE": "profile.parsing.success",
        "HRFLOW_ORIGIN": "api",
        "HRFLOW_MESSAGE": "profile parsing succeed",
        "HRFLOW_PROFILE_KEY": "d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d",
        "HRFLOW_PROFILE_SOURCE_KEY": "d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"}
    assert (v["HRFLOW_EVENT_OBJECT"], v["HRFLOW_EVENT_ACTION"],
            v["HRFLOW_EVENT_STATUS"]) == ("profile", "parsing", "success")
    assert v["HRFLOW_EVENT_ID"] == event_id(run["stdin"])
    assert (v["HRFLOW_EVENT_INDEX"], v["HRFLOW_EVENT_COUNT"],
            v["HRFLOW_ATTEMPT"], v["HRFLOW_SIGNATURE"]) == ("0", "1", "1",
                                                           "verified")
    assert len(v["HRFLOW_DELIVERY_ID"]) == 32
    assert json.loads(run["stdin"])["profile"]["source"]["key"] == \
        "d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"
    # A clean environment: PATH and the event, nothing of Apache's.
    assert not {k for k in run["env"] if not k.startswith("HRFLOW_")} - \
        {"PATH", "PWD", "SHLVL", "_"}
    assert run["cwd"] == os.path.join(scratch, "handlers")


def test_job_form_keeps_board_and_source(httpd, out):
    for key in ("board", "source"):
        job = json.dumps({"key": "j7", key: {"key": "b3"}})
        body = urllib.parse.urlencode({"type": "job.storing.update",
                                       "origin": "api", "message": "m",
                                       "job": job}).encode()
        r, _ = post_signed(httpd, "/hook", body,
                           "application/x-www-form-urlencoded")
        assert r.status == 200
    first, second = records(out)
    assert first["env"]["HRFLOW_JOB_BOARD_KEY"] == "b3"
    assert second["env"]["HRFLOW_JOB_SOURCE_KEY"] == "b3"


def test_json_object_exact_variables(httpd, out):
    text = (b'{"type": "profile.scoring.error", "origin": "api", '
            b'"message": "m", "profile": {"key": "p1", "source": {"key": "s1"}},'
            b' "job": {"key": "j1", "board": {"key": "b1"}},'
            b' "tags": [{"name": "a"}, {"name": "b"}], "score": 0.75,'
            b' "ok": true, "none": null}')
    r, body = post_signed(httpd, "/hook", text, "application/json; charset=utf-8")
    assert r.status == 200, body
    (run,) = records(out)
    v = hrflow_vars(run["env"])
    assert {k: v[k] for k in v if k not in EVENT_VARS} == {
        "HRFLOW_TYPE": "profile.scoring.error", "HRFLOW_ORIGIN": "api",
        "HRFLOW_MESSAGE": "m", "HRFLOW_PROFILE_KEY": "p1",
        "HRFLOW_PROFILE_SOURCE_KEY": "s1", "HRFLOW_JOB_KEY": "j1",
        "HRFLOW_JOB_BOARD_KEY": "b1", "HRFLOW_TAGS_0_NAME": "a",
        "HRFLOW_TAGS_1_NAME": "b", "HRFLOW_SCORE": "0.75", "HRFLOW_OK": "true",
        "HRFLOW_NONE": ""}
    assert EVENT_VARS <= set(v)
    assert run["stdin"] == text
    assert v["HRFLOW_EVENT_ID"] == event_id(text)


def test_batch_runs_in_order(httpd, out):
    events = [{"type": t, "profile": {"key": str(i)}} for i, t in enumerate(
        ["profile.parsing.success", "profile.storing.update",
         "action.stage.success"])]
    text = json.dumps(events).encode()
    r, body = post_signed(httpd, "/hook", text, "application/json")
    assert r.status == 200
    assert json.loads(body) == {"status": "ok", "events": 3, "handled": 3,
                                "ignored": 0}
    runs = records(out)
    assert [x["env"]["HRFLOW_TYPE"] for x in runs] == [e["type"] for e in events]
    assert [x["env"]["HRFLOW_EVENT_INDEX"] for x in runs] == ["0", "1", "2"]
    assert {x["env"]["HRFLOW_EVENT_COUNT"] for x in runs} == {"3"}
    assert [json.loads(x["stdin"]) for x in runs] == events
    assert len({x["env"]["HRFLOW_DELIVERY_ID"] for x in runs}) == 3


def test_signed_batch_payload(httpd, out):
    events = [{"type": "job.train.start"}, {"type": "action.rating.error"}]
    r, _ = httpd.request("POST", "/hook", b"", {
        "HRFLOW-SIGNATURE": signed_value(SECRETS[0], json.dumps(events).encode())})
    assert r.status == 200
    assert [x["env"]["HRFLOW_TYPE"] for x in records(out)] == \
        ["job.train.start", "action.rating.error"]


def test_new_event_types_accepted(httpd, out):
    text = b'{"type":"profile.embedding.success"}'
    r, _ = post_signed(httpd, "/hook", text, "application/json")
    assert r.status == 200
    assert records(out)[0]["env"]["HRFLOW_EVENT_ACTION"] == "embedding"


def test_variables_reach_the_access_log(httpd, out):
    if httpd.front == "cgi":
        pytest.skip("a CGI cannot set the server's request environment")
    text = b'{"type":"job.scoring.success","job":{"key":"zz9"}}'
    r, _ = post_signed(httpd, "/hook", text, "application/json")
    assert r.status == 200
    for _ in range(50):   # the access log is written after the answer
        line = [x for x in httpd.access_log().splitlines()
                if event_id(text) in x]
        if line:
            break
        time.sleep(0.1)
    assert line and line[-1].startswith("200 POST /hook")
    assert "job.scoring.success" in line[-1]


def test_handler_that_never_reads_its_input(httpd, out):
    """A handler that exits at once leaves a big event unread: no harm."""
    text = json.dumps({"type": "profile.parsing.success",
                       "pad": "x" * 500000}).encode()
    for _ in range(3):
        r, data = httpd.request("POST", "/noread", text,
                                {"Content-Type": "application/json"})
        assert r.status == 200, data
        assert json.loads(data)["handled"] == 1
