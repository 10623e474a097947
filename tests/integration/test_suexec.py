"""hrflow.cgi under a real suEXEC, as shared hosts run it: Debian's
apache2-suexec-pristine, a user of its own, ~user/public_html/cgi-bin with
the program, its config, secret, handler and the shipped .htaccess, and an
httpd started by root as User www-data with mod_userdir, mod_suexec and
mod_cgid.  The handler runs as that user; each refusal is clear: suexec's
own in its log (and httpd's 500), the program's in the error log and its
JSON answer; SetEnv HRFLOW_CONFIG is dropped by suexec and the documented
place, hrflow.conf beside the program, is used instead."""
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import types

import pytest

from conftest import (CGI, HERE, MODULES_DIR, SECRETS, Httpd, make_dir,
                      register_secret)
from hrflow_sign import signed_value

SUEXEC = "/usr/lib/apache2/suexec"
SUEXEC_LOG = "/var/log/apache2/suexec.log"
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-suexec"}}'
# What httpd itself logs when suexec refuses to start a program.
SUEXEC_REFUSED = r"End of script output before headers|suexec policy"


def suexec_settings():
    """suexec's compiled-in settings, or None when it is not usable."""
    if not os.path.exists(SUEXEC):
        return None
    st = os.stat(SUEXEC)
    if st.st_uid != 0 or not st.st_mode & stat.S_ISUID:
        return None
    r = subprocess.run([SUEXEC, "-V"], capture_output=True, text=True)
    return dict(re.findall(r'-D (\w+)=?"?([^"\n]*)"?', r.stderr + r.stdout))


SETTINGS = suexec_settings() if os.geteuid() == 0 else None
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="suEXEC needs httpd started by root"),
    pytest.mark.skipif(os.geteuid() == 0 and SETTINGS is None,
                       reason=f"no setuid-root suexec at {SUEXEC}: install "
                       "apache2-suexec-pristine"),
]

HANDLER = """#!/bin/sh
# Who ran me, for what.
id -u > "$1/uid"
cat > "$1/event.json"
echo "$HRFLOW_PROFILE_KEY" > "$1/key"
"""


def own(path, user, mode):
    os.chmod(path, mode)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def put(path, data, user, mode):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return own(path, user, mode)


@pytest.fixture(scope="module")
def user(scratch):
    """A user of its own, with a home under the scratch folder; removed
    after the tests, whatever happens."""
    homes = make_dir(os.path.join(scratch, "suexec-home"))
    name = "hfsx" + secrets.token_hex(3)
    home = os.path.join(homes, name)
    r = subprocess.run(["useradd", "--no-create-home", "--home-dir", home,
                        "--shell", "/usr/sbin/nologin", "--user-group", name],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        pw = pwd.getpwnam(name)
        assert pw.pw_uid >= int(SETTINGS.get("AP_UID_MIN", 100))
        yield types.SimpleNamespace(pw_name=name, pw_uid=pw.pw_uid,
                                    pw_gid=pw.pw_gid, pw_dir=pw.pw_dir,
                                    homes=homes)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def site(scratch, user):
    """~user/public_html/cgi-bin, all the user's, and the server."""
    suffix = SETTINGS.get("AP_USERDIR_SUFFIX", "public_html")
    home = own(make_dir(user.pw_dir), user, 0o755)
    public = own(make_dir(os.path.join(home, suffix)), user, 0o755)
    cgi_bin = own(make_dir(os.path.join(public, "cgi-bin")), user, 0o755)
    handlers = own(make_dir(os.path.join(cgi_bin, "handlers")), user, 0o755)
    out = own(make_dir(os.path.join(home, "out")), user, 0o755)
    private = own(make_dir(os.path.join(home, "private")), user, 0o700)
    put(os.path.join(cgi_bin, "hrflow.cgi"), open(CGI, "rb").read(), user,
        0o755)
    put(os.path.join(handlers, "whoami.sh"), HANDLER, user, 0o700)
    # Under suEXEC the program runs as the user: 0600 is right.
    put(os.path.join(cgi_bin, "hrflow.conf"),
        "HrflowSecretFile hrflow.secret\n"
        f"HrflowHandler * handlers/whoami.sh {out}\n", user, 0o600)
    put(os.path.join(cgi_bin, "hrflow.secret"), SECRETS[0] + "\n", user,
        0o600)
    # A config the .htaccess names with SetEnv: suexec drops the variable.
    other_out = own(make_dir(os.path.join(home, "other-out")), user, 0o755)
    other_secret = register_secret("other-secret-" + secrets.token_hex(4))
    put(os.path.join(private, "hrflow.conf"),
        f"HrflowSecret {other_secret}\n"
        f"HrflowHandler * {handlers}/whoami.sh {other_out}\n", user, 0o600)
    htaccess = open(os.path.join(TOP, "conf", "cgi", "htaccess")).read()
    put(os.path.join(cgi_bin, ".htaccess"),
        htaccess + f"SetEnv HRFLOW_CONFIG {private}/hrflow.conf\n", user,
        0o644)

    server = Httpd("suexec", scratch)
    userdir = open("/etc/apache2/mods-available/userdir.conf").read() \
        if os.path.exists("/etc/apache2/mods-available/userdir.conf") else (
            "UserDir public_html\nUserDir disabled root\n"
            "<Directory /home/*/public_html>\n"
            "AllowOverride FileInfo AuthConfig Limit Indexes\n"
            "Options MultiViews Indexes SymLinksIfOwnerMatch IncludesNoExec\n"
            "Require method GET POST OPTIONS\n</Directory>\n")
    userdir = userdir.replace("/home/*/", f"{user.homes}/*/")
    server.write_config(
        "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                for m in ("cgid", "alias", "env", "userdir", "suexec"))
        + userdir
        # The host lets cgi-bin run programs, as shared hosts do.
        + f"<Directory {user.homes}/*/{suffix}/cgi-bin>\n"
          "    Options +ExecCGI\n</Directory>\n")
    server.start()
    assert "suEXEC mechanism enabled" in server.error_log()
    server.url = f"/~{user.pw_name}/cgi-bin/hrflow.cgi"
    server.cgi_bin, server.out, server.other_out = cgi_bin, out, other_out
    server.handlers = handlers
    server.other_secret = other_secret
    yield server
    server.stop()


def suexec_log_since(offset):
    try:
        with open(SUEXEC_LOG, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


def suexec_log_size():
    try:
        return os.path.getsize(SUEXEC_LOG)
    except OSError:
        return 0


def post(site, secret=SECRETS[0]):
    return site.request("POST", site.url, b"",
                        {"HTTP-HRFLOW-SIGNATURE": signed_value(secret, EVENT)})


def clear(folder):
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))


def test_signed_event_runs_the_handler_as_the_user(site, user):
    clear(site.out)
    r, data = post(site)
    assert r.status == 200, data + site.error_log().encode()
    assert json.loads(data) == {"status": "ok", "events": 1, "handled": 1,
                                "ignored": 0}
    assert open(os.path.join(site.out, "uid")).read().strip() \
        == str(user.pw_uid)
    assert open(os.path.join(site.out, "key")).read().strip() == "k-suexec"
    assert open(os.path.join(site.out, "event.json"), "rb").read() == EVENT
    assert os.stat(os.path.join(site.out, "uid")).st_uid == user.pw_uid


def test_setenv_config_is_dropped_and_the_one_beside_is_used(site):
    """suexec keeps only its list of variables: HRFLOW_CONFIG from the
    .htaccess never arrives, and hrflow.conf beside the program is read
    (the other config's secret does not verify, the beside one does)."""
    clear(site.out)
    clear(site.other_out)
    r, data = post(site, site.other_secret)
    assert r.status == 401, data
    r, data = post(site)
    assert r.status == 200, data
    assert os.listdir(site.other_out) == []
    assert os.path.exists(os.path.join(site.out, "uid"))


@pytest.mark.expect_log(SUEXEC_REFUSED)
@pytest.mark.parametrize("what,reason", [
    ("program", "file is writable by others: ({cgi_bin}/hrflow.cgi)"),
    ("folder", "directory is writable by others: ({cgi_bin})"),
])
def test_group_writable_is_refused_by_suexec(site, what, reason):
    path = os.path.join(site.cgi_bin, "hrflow.cgi") if what == "program" \
        else site.cgi_bin
    mode = stat.S_IMODE(os.stat(path).st_mode)
    before = suexec_log_size()
    os.chmod(path, mode | stat.S_IWGRP)
    try:
        r, data = post(site)
    finally:
        os.chmod(path, mode)
    assert r.status == 500
    assert reason.format(cgi_bin=site.cgi_bin) in suexec_log_since(before)
    assert re.search(SUEXEC_REFUSED, site.error_log(wait_for="script"))


@pytest.mark.expect_log(r"hrflow\.cgi: \[error\] .*HrflowHandler: .* is "
                        r"writable by its group")
def test_group_writable_handler_is_refused_by_the_program(site):
    """suexec checks only the program: hrflow.cgi checks what it runs."""
    h = os.path.join(site.handlers, "whoami.sh")
    os.chmod(h, 0o770)
    try:
        r, data = post(site)
    finally:
        os.chmod(h, 0o700)
    assert r.status == 500
    assert json.loads(data)["error"] == "server_misconfigured"
    log = site.error_log(wait_for="writable by its group")
    assert (f"HrflowHandler: {h}: it is writable by its group (mode 0770): "
            "only its owner may write to it; chmod g-w it") in log
