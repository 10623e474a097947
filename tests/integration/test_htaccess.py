"""The customer's folder as Debian's userdir.conf sets it up, without
suEXEC: the shipped .htaccess must not turn the folder into a 500
(`AllowOverride FileInfo AuthConfig Limit Indexes` has no Options), it
must keep the config and secret from being downloaded, and hrflow.cgi runs
as the server's user (www-data) on files that belong to the customer."""
import json
import os
import pwd
import re
import shutil

import pytest

from conftest import (CGI, HERE, MODULES_DIR, SECRETS, Httpd, make_dir,
                      records, run_user)
from hrflow_sign import signed_value

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
HTACCESS = os.path.join(TOP, "conf", "cgi", "htaccess")
USERDIR_CONF = "/etc/apache2/mods-available/userdir.conf"
EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-ht"}}'

# Debian's userdir.conf, used when the machine has no copy of it.
USERDIR_DEFAULT = """<Directory /home/*/public_html>
	AllowOverride FileInfo AuthConfig Limit Indexes
	Options MultiViews Indexes SymLinksIfOwnerMatch IncludesNoExec
	Require method GET POST OPTIONS
</Directory>
"""


def userdir_section(public_html):
    """Debian's <Directory /home/*/public_html>, for this public_html."""
    try:
        text = open(USERDIR_CONF).read()
    except OSError:
        text = USERDIR_DEFAULT
    m = re.search(r"<Directory /home/\*/public_html>.*?</Directory>", text,
                  re.S)
    section = m.group(0) if m else USERDIR_DEFAULT
    assert "AllowOverride FileInfo" in section
    return section.replace("/home/*/public_html", public_html, 1) + "\n"


def customer():
    """The owner of the customer's files: not the server's user."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def server_group_gid():
    return pwd.getpwnam(run_user()[0]).pw_gid


def put(path, data, mode, uid, gid):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
    return path


@pytest.fixture(scope="module")
def site(scratch):
    """~customer/public_html/cgi-bin with hrflow.cgi, its config, secret,
    a handler and the shipped .htaccess; the host allows ExecCGI there,
    as hosts do for cgi-bin."""
    uid, gid = customer()
    home = make_dir(os.path.join(scratch, "htaccess-home"))
    public = make_dir(os.path.join(home, "public_html"))
    cgi_bin = make_dir(os.path.join(public, "cgi-bin"))
    handlers = make_dir(os.path.join(cgi_bin, "handlers"))
    put(os.path.join(public, "index.txt"), "home page\n", 0o644, uid, gid)
    put(os.path.join(cgi_bin, "readme.txt"), "hello\n", 0o644, uid, gid)
    put(os.path.join(cgi_bin, "hrflow.cgi"), open(CGI, "rb").read(), 0o755,
        uid, gid)
    put(os.path.join(handlers, "record.sh"),
        open(os.path.join(HERE, "handlers", "record.sh"), "rb").read(),
        0o755, uid, gid)
    put(os.path.join(cgi_bin, "hrflow.conf"),
        "HrflowSecretFile hrflow.secret\n"
        f"HrflowHandler * handlers/record.sh {scratch}/out\n", 0o644, uid,
        gid)
    # Without suEXEC the server's user must read the secret: group
    # www-data, 0640, as the host sets it.
    put(os.path.join(cgi_bin, "hrflow.secret"), SECRETS[0] + "\n", 0o640,
        uid, server_group_gid())
    put(os.path.join(cgi_bin, ".htaccess"), open(HTACCESS, "rb").read(),
        0o644, uid, gid)
    for d in (home, public, cgi_bin, handlers):
        if os.geteuid() == 0:
            os.chown(d, uid, gid)

    server = Httpd("htaccess", scratch)
    server.write_config(
        "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                for m in ("cgid", "alias", "env"))
        + f"Alias /~customer {public}\n"
        + userdir_section(public)
        + f"<Directory {cgi_bin}>\n    Options +ExecCGI\n</Directory>\n")
    server.cgi_bin = cgi_bin
    server.owner = uid
    server.start()
    yield server
    server.stop()


def post(server, secret=SECRETS[0]):
    return server.request("POST", "/~customer/cgi-bin/hrflow.cgi", b"",
                          {"HTTP-HRFLOW-SIGNATURE":
                           signed_value(secret, EVENT)})


def test_shipped_htaccess_works_under_debian_userdir(site, out):
    r, data = site.request("GET", "/~customer/cgi-bin/readme.txt")
    assert r.status == 200, site.error_log()
    assert data == b"hello\n"
    r, _ = site.request("GET", "/~customer/index.txt")
    assert r.status == 200

    r, data = post(site)
    assert r.status == 200, data + site.error_log().encode()
    assert json.loads(data)["handled"] == 1
    run = records(out)[0]
    assert run["env"]["HRFLOW_PROFILE_KEY"] == "k-ht"
    assert run["cwd"] == os.path.join(site.cgi_bin, "handlers")


@pytest.mark.expect_log(r"AH01630: client denied by server configuration")
@pytest.mark.parametrize("name", ["hrflow.conf", "hrflow.secret",
                                  "handlers/record.sh", ".htaccess"])
def test_shipped_htaccess_keeps_private_files(site, name):
    r, data = site.request("GET", "/~customer/cgi-bin/" + name)
    assert r.status in (403, 404), (r.status, data)
    assert SECRETS[0].encode() not in data
    assert b"HrflowSecretFile" not in data


@pytest.mark.expect_log(r"Options not allowed here")
def test_old_htaccess_line_breaks_the_folder(site, scratch):
    """What the shipped file avoids: an Options line where the host does
    not allow it answers 500 for every file of the folder."""
    probe = make_dir(os.path.join(os.path.dirname(site.cgi_bin), "probe"))
    with open(os.path.join(probe, "page.txt"), "w") as f:
        f.write("page\n")
    os.chmod(os.path.join(probe, "page.txt"), 0o644)
    with open(os.path.join(probe, ".htaccess"), "w") as f:
        f.write("Options +ExecCGI\n")
    os.chmod(os.path.join(probe, ".htaccess"), 0o644)
    try:
        r, _ = site.request("GET", "/~customer/probe/page.txt")
        assert r.status == 500
        assert "Options not allowed here" in site.error_log(
            wait_for="Options not allowed here")
    finally:
        shutil.rmtree(probe)


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="needs root to give the secret file away")
@pytest.mark.expect_log(r"HrflowSecretFile: cannot read .*permission denied")
def test_secret_only_the_customer_can_read_is_explained(site):
    secret = os.path.join(site.cgi_bin, "hrflow.secret")
    os.chown(secret, site.owner, customer()[1])
    os.chmod(secret, 0o600)
    try:
        r, data = post(site)
    finally:
        os.chown(secret, site.owner, server_group_gid())
        os.chmod(secret, 0o640)
    assert r.status == 500
    assert json.loads(data)["error"] == "server_misconfigured"
    log = site.error_log(wait_for="permission denied")
    line = [x for x in log.splitlines() if "permission denied" in x][-1]
    uid = pwd.getpwnam(run_user()[0]).pw_uid
    assert (f"runs as uid {uid} and the file belongs to uid {site.owner} "
            "(mode 0600)") in line
    assert "Without suEXEC" in line and "chmod 640" in line
