"""hrflow.cgi on its own: run directly with CGI/1.1 variables, its terminal
helper (--check, --sign, --help, --version), and its two special builds.
(Under httpd and mod_cgid it runs every other integration test: see the
"cgi" parameter of the httpd fixture.)"""
import json
import os
import subprocess

import pytest

from conftest import BUILD, CGI, SECRETS, records, write_private
from test_startup import BAD

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-42"}}'


@pytest.fixture
def cgi_dir(scratch):
    d = os.path.join(scratch, "cgi-direct")
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    return d


def write_conf(d, text, name="hrflow.conf", mode=0o600):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def run_cgi(conf, method="POST", body=b"", headers=None, ctype=None,
            length=True):
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method,
           "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "/cgi-bin/hrflow.cgi",
           "PATH": "/usr/bin:/bin"}
    if conf:
        env["HRFLOW_CONFIG"] = conf
    if ctype:
        env["CONTENT_TYPE"] = ctype
    if length:
        env["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    r = subprocess.run([CGI], input=body, env=env, capture_output=True,
                       timeout=30)
    head, _, payload = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(x.split(": ", 1) for x in lines)
    return fields, payload, r.stderr.decode(), r.returncode


def tool(*args, stdin=b"", env=None):
    e = {"PATH": "/usr/bin:/bin"}
    e.update(env or {})
    return subprocess.run([CGI, *args], input=stdin, capture_output=True,
                          env=e, timeout=30)


# ---- run directly, as a server would -----------------------------------

def test_direct_signed_event_runs_handler(scratch, cgi_dir, out):
    conf = write_conf(cgi_dir, f"HrflowSecret {SECRETS[0]}\n"
                      f"HrflowHandler * {scratch}/handlers/record.sh {out}\n")
    sig = tool("--sign", "--config", conf, stdin=EVENT).stdout.decode().strip()
    fields, body, err, rc = run_cgi(conf, headers={"HTTP-HRFLOW-SIGNATURE": sig})
    assert rc == 0
    assert fields["Status"] == "200 OK"
    assert fields["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "events": 1, "handled": 1,
                                "ignored": 0}
    run = records(out)[0]
    assert run["env"]["HRFLOW_PROFILE_KEY"] == "k-42"
    assert run["env"]["HRFLOW_SIGNATURE"] == "verified"
    assert run["stdin"] == EVENT
    assert "handler=" + f"{scratch}/handlers/record.sh result=exit 0" in err
    assert SECRETS[0] not in err


@pytest.mark.parametrize("method,status,error", [
    ("GET", "405 Method Not Allowed", "method_not_allowed"),
    ("POST", "401 Unauthorized", "missing_signature"),
])
def test_direct_refusals(cgi_dir, method, status, error):
    conf = write_conf(cgi_dir, "HrflowSecret s\n")
    fields, body, err, _ = run_cgi(conf, method, EVENT,
                                   ctype="application/json")
    assert fields["Status"] == status
    assert json.loads(body)["error"] == error
    assert ("Allow" in fields) == (method == "GET")


def test_direct_body_without_length_is_read_to_the_end(cgi_dir, out, scratch):
    conf = write_conf(cgi_dir, "HrflowSignature optional\n"
                      f"HrflowHandler * {scratch}/handlers/record.sh {out}\n")
    fields, body, _, _ = run_cgi(conf, body=EVENT, ctype="application/json",
                                 length=False)
    assert fields["Status"] == "200 OK"
    assert len(records(out)) == 1


def test_direct_short_body_is_refused(cgi_dir):
    conf = write_conf(cgi_dir, "HrflowSignature optional\n")
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST",
           "CONTENT_TYPE": "application/json", "HRFLOW_CONFIG": conf,
           "CONTENT_LENGTH": str(len(EVENT) + 5)}
    r = subprocess.run([CGI], input=EVENT, env=env, capture_output=True)
    assert r.stdout.startswith(b"Status: 400 Bad Request\r\n")
    assert b'"error":"incomplete_body"' in r.stdout


@pytest.mark.parametrize("text,message", [
    (None, "cannot read"),
    ("HrflowSecret s\n<Location /x>\n", "sections are not read here"),
    ("HrflowSecret s\nHrflowSpool /tmp\n", "HrflowSpool: only the Apache module"),
    ("HrflowSecret s\nHrflowVerify on\n",
     "HrflowVerify: gateway mode is the Apache module's"),
    ("HrflowSecret s\nAddHandler x .y\n", "line 2: unknown directive 'AddHandler'"),
])
def test_direct_bad_config_answers_500(cgi_dir, text, message):
    conf = (write_conf(cgi_dir, text) if text
            else os.path.join(cgi_dir, "missing.conf"))
    fields, body, err, _ = run_cgi(conf, body=EVENT, ctype="application/json")
    assert fields["Status"] == "500 Internal Server Error"
    assert json.loads(body)["error"] == "server_misconfigured"
    assert message in err


def test_config_found_beside_the_program(cgi_dir):
    prog = os.path.join(cgi_dir, "hrflow.cgi")
    subprocess.run(["cp", CGI, prog], check=True)
    write_conf(cgi_dir, "HrflowSignature optional\n")
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST",
           "CONTENT_TYPE": "application/json",
           "CONTENT_LENGTH": str(len(EVENT)), "SCRIPT_FILENAME": prog}
    r = subprocess.run([prog], input=EVENT, env=env, capture_output=True)
    assert b"Status: 200 OK" in r.stdout, r.stderr


# ---- shared hosts are shared: permissions --------------------------------

def test_config_writable_by_others_refused(cgi_dir):
    conf = write_conf(cgi_dir, "HrflowSecret s\n", mode=0o666)
    r = tool("--check", conf)
    assert r.returncode == 1
    assert (f"config {conf}: it is writable by others (mode 0666)"
            in r.stderr.decode())


def test_secret_file_readable_by_others_refused(cgi_dir):
    write_conf(cgi_dir, "s3cret\n", name="hrflow.secret", mode=0o644)
    conf = write_conf(cgi_dir, "HrflowSecretFile hrflow.secret\n")
    r = tool("--check", conf)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "HrflowSecretFile: " + os.path.join(cgi_dir, "hrflow.secret") in err
    assert "readable or writable by other users" in err
    os.chmod(os.path.join(cgi_dir, "hrflow.secret"), 0o640)
    assert tool("--check", conf).returncode == 0


def test_inline_secret_in_readable_config_warns(cgi_dir):
    conf = write_conf(cgi_dir, "HrflowSecret s\n", mode=0o644)
    r = tool("--check", conf)
    assert r.returncode == 0
    assert "holds HrflowSecret and other users may read it" in r.stderr.decode()


# ---- the terminal helper -------------------------------------------------

@pytest.mark.parametrize("name", sorted(BAD))
def test_check_catches_each_startup_error(scratch, cgi_dir, name):
    empty = os.path.join(scratch, "htdocs", "empty")
    open(empty, "w").close()
    os.chmod(empty, 0o600)      # private, so that emptiness is the error
    body, message = BAD[name]
    conf = write_conf(cgi_dir, body.format(scratch=scratch) + "\n")
    r = tool("--check", conf)
    assert r.returncode == 1
    expected = message.format(scratch=scratch).split(" (endpoint")[0]
    assert expected in r.stderr.decode()
    assert conf in r.stderr.decode()


def test_check_accepts_quoting_and_continuations(scratch, cgi_dir):
    conf = write_conf(cgi_dir,
                      "# a comment\n\n  HrflowSecret \"two words\"\n"
                      f"HrflowHandler 'job.*' \\\n    {scratch}/handlers/fail.sh "
                      "\"an \\\"arg\\\"\"\n")
    r = tool("--check", conf)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"{conf}: Syntax OK\n"


def test_check_with_the_example_config_of_conf(tmp_path):
    d = tmp_path / "site"
    d.mkdir()
    (d / "handlers").mkdir()
    for h in ("show-env.sh", "log-event.sh"):
        (d / "handlers" / h).write_text("#!/bin/sh\n")
        (d / "handlers" / h).chmod(0o755)
    (d / "hrflow.secret").write_text("s3cret\n")
    (d / "hrflow.secret").chmod(0o600)
    conf = d / "hrflow.conf"
    conf.write_text(open(os.path.join(TOP, "conf", "cgi", "hrflow.conf")).read())
    conf.chmod(0o644)
    r = tool("--check", str(conf))
    assert r.returncode == 0, r.stderr


def test_sign_refuses_what_is_not_an_event(cgi_dir):
    conf = write_conf(cgi_dir, "HrflowSecret s\n")
    r = tool("--sign", "--config", conf, stdin=b'{"no":"type"}')
    assert r.returncode == 1 and r.stdout == b""


def test_sign_uses_HRFLOW_CONFIG(cgi_dir):
    conf = write_conf(cgi_dir, "HrflowSecret s\n")
    a = tool("--sign", stdin=EVENT, env={"HRFLOW_CONFIG": conf})
    b = tool("--sign", "--config", conf, stdin=EVENT + b"\n")
    assert a.returncode == 0 and a.stdout == b.stdout


def test_help_and_version():
    r = tool("--help")
    assert r.returncode == 0 and b"--check FILE" in r.stdout
    r = tool("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"hrflow.cgi (mod_hrflow) ")
    assert tool("--bogus").returncode == 2
    assert tool().returncode == 2


# ---- through a real server: both front ends -------------------------------

def test_sign_output_sent_with_curl_is_accepted(httpd, out, cgi_dir):
    conf = write_conf(cgi_dir, f"HrflowSecret {SECRETS[1]}\n")
    sig = tool("--sign", "--config", conf, stdin=EVENT)
    assert sig.returncode == 0
    r = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
         "-H", "HTTP-HRFLOW-SIGNATURE: " + sig.stdout.decode().strip(),
         f"http://127.0.0.1:{httpd.port}/hook"],
        capture_output=True, timeout=30)
    body, status = r.stdout.decode().rsplit("\n", 1)
    assert status == "200", body
    assert records(out)[0]["env"]["HRFLOW_PROFILE_KEY"] == "k-42"


def test_query_string_arguments_never_reach_the_helper(httpd, out):
    r, data = httpd.request("GET", "/hook?--sign")
    assert r.status == 405
    r, data = httpd.request("POST", "/hook?--check+/etc/passwd", EVENT,
                            {"Content-Type": "application/json"})
    assert r.status == 401
    assert b"Syntax OK" not in data


# ---- the builds -----------------------------------------------------------

def path_without_apxs(tmp_path):
    """A PATH with every program of /usr/bin but apxs."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in os.listdir("/usr/bin"):
        if name.startswith("apxs"):
            continue
        if name == "apr-1-config":   # finds its files from its own path
            (d / name).write_text('#!/bin/sh\nexec /usr/bin/apr-1-config "$@"\n')
            (d / name).chmod(0o755)
        else:
            (d / name).symlink_to(os.path.join("/usr/bin", name))
    return f"{d}:/usr/sbin"


def test_static_cgi_builds_without_apxs(tmp_path):
    env = dict(os.environ, PATH=path_without_apxs(tmp_path))
    assert subprocess.run(["sh", "-c", "command -v apxs apxs2"], env=env,
                          capture_output=True).returncode != 0
    build = os.path.join(BUILD, "tests", "static-cgi")
    subprocess.run(["rm", "-rf", build], check=True)
    os.makedirs(build)
    r = subprocess.run(
        ["sh", "-c", f"{TOP}/configure --disable-module --enable-static-cgi "
         f"&& make -j{os.cpu_count()}"],
        cwd=build, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "module: no" in r.stdout
    assert not os.path.exists(os.path.join(build, "mod_hrflow.so"))
    prog = os.path.join(build, "cgi", "hrflow.cgi")
    ldd = subprocess.run(["ldd", prog], capture_output=True, text=True)
    libs = [line.split()[0] for line in ldd.stdout.splitlines()]
    assert libs, ldd.stdout
    for lib in libs:
        assert lib.startswith(("linux-vdso", "libc.so", "/lib64/ld-linux",
                               "ld-linux", "libm.so", "libpthread.so",
                               "libdl.so", "librt.so")), ldd.stdout
    r = subprocess.run([prog, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "hrflow.cgi" in r.stdout
