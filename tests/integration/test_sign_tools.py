"""scripts/sign.sh and hrflow.cgi --sign take the secret from a file (in
HrflowSecretFile's format, so a module user signs with the module's own
secret file) or from standard input, never from the command line: no
program they run has the secret among its arguments, where ps shows it."""
import json
import os
import stat
import subprocess

import pytest

from conftest import CGI, SECRETS
from hrflow_sign import signed_value

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIGN_SH = os.path.join(TOP, "scripts", "sign.sh")
EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-sign"}}'
LONG_SECRET = "L" * 100          # longer than HMAC-SHA256's 64-byte block


def private(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return str(path)


def expected(secret, event=EVENT):
    return signed_value(secret, event)


def run(args, stdin=b"", env=None):
    e = {"PATH": "/usr/bin:/bin"}
    e.update(env or {})
    return subprocess.run(args, input=stdin, capture_output=True, env=e,
                          timeout=60)


def secret_file(tmp_path, secret=SECRETS[0]):
    # HrflowSecretFile's format: comments, blank lines, blanks, CRLF.
    return private(tmp_path / "hrflow.secret",
                   f"# rotated 2026-11\n\n  {secret}\t\r\n{SECRETS[1]}\n")


@pytest.mark.parametrize("secret", [SECRETS[0], LONG_SECRET],
                         ids=["short", "longer-than-a-block"])
def test_sign_sh_reads_a_secret_file(tmp_path, secret):
    r = run([SIGN_SH, secret_file(tmp_path, secret)], stdin=EVENT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == expected(secret)


def test_sign_sh_reads_the_secret_on_stdin(tmp_path):
    event = tmp_path / "ev.json"
    event.write_bytes(EVENT)
    r = run([SIGN_SH, "-", str(event)], stdin=SECRETS[0].encode() + b"\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == expected(SECRETS[0])


def test_sign_sh_refuses_a_secret_on_the_command_line():
    r = run([SIGN_SH, "hunter2-secret"], stdin=EVENT)
    assert r.returncode == 2
    assert r.stdout == b""
    assert b"not a file" in r.stderr
    assert b"hunter2" not in r.stderr


def spy_path(tmp_path):
    """A PATH whose every program records its arguments, then runs the real
    one: what ps would have shown."""
    spy = tmp_path / "spy"
    spy.mkdir()
    log = tmp_path / "argv.log"
    for name in ("openssl", "od", "tr", "base64", "cat", "head"):
        p = spy / name
        p.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {log}\n'
                     f'exec /usr/bin/{name} "$@"\n')
        p.chmod(0o755)
    return f"{spy}:/usr/bin:/bin", log


def test_sign_sh_gives_no_program_the_secret_as_argument(tmp_path):
    path, log = spy_path(tmp_path)
    r = run([SIGN_SH, secret_file(tmp_path)], stdin=EVENT,
            env={"PATH": path})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == expected(SECRETS[0])
    argv = log.read_text()
    assert "openssl" in argv            # the spies did see the calls
    assert SECRETS[0] not in argv


def test_cgi_signs_with_a_module_secret_file(tmp_path):
    """The module's HrflowSecretFile, root's 0600 file outside any CGI
    folder: no config needed."""
    secret = secret_file(tmp_path)
    r = run([CGI, "--sign", "--secret-file", secret], stdin=EVENT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == expected(SECRETS[0])

    event = tmp_path / "ev.json"
    event.write_bytes(EVENT)
    r = run([CGI, "--sign", "--secret-file", "-", str(event)],
            stdin=b"# from a password manager\n" + SECRETS[1].encode())
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == expected(SECRETS[1])


def test_cgi_sign_refuses_what_it_cannot_use(tmp_path):
    r = run([CGI, "--sign", "--secret-file", "-"], stdin=EVENT)
    assert r.returncode == 2
    assert b"the event must be a file" in r.stderr
    r = run([CGI, "--sign", "--secret-file", str(tmp_path / "none")],
            stdin=EVENT)
    assert r.returncode == 1
    assert b"cannot read" in r.stderr
    empty = private(tmp_path / "empty.secret", "# nothing yet\n")
    r = run([CGI, "--sign", "--secret-file", empty], stdin=EVENT)
    assert r.returncode == 1
    assert b"no secret in" in r.stderr
    r = run([CGI, "--sign", "--secret-file", empty, "--config", empty],
            stdin=EVENT)
    assert r.returncode == 2


def test_signed_with_the_secret_file_is_accepted(httpd, tmp_path, out):
    secret = secret_file(tmp_path)
    sig = run([CGI, "--sign", "--secret-file", secret], stdin=EVENT)
    r, data = httpd.request("POST", "/hook", b"",
                            {"HTTP-HRFLOW-SIGNATURE":
                             sig.stdout.decode().strip()})
    assert r.status == 200, data
    assert json.loads(data)["handled"] == 1

    sig = run([SIGN_SH, secret], stdin=EVENT)
    r, data = httpd.request("POST", "/hook", b"",
                            {"HTTP-HRFLOW-SIGNATURE":
                             sig.stdout.decode().strip()})
    assert r.status == 200, data


def test_sign_sh_is_executable():
    assert os.stat(SIGN_SH).st_mode & stat.S_IXUSR
