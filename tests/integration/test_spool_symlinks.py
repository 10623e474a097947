"""The spool belongs to the server's user, who may plant symbolic links in
it: root (Apache's parent at every start and graceful restart, hrflowctl)
must never follow one.  Each test plants links as that user would, then
checks that root changed, read and wrote nothing outside the spool and said
why it refused."""
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, Httpd, gone, run_user

HRFLOWCTL = os.path.join(BUILD, "tools", "hrflowctl")
STATES = ("tmp", "new", "run", "retry", "failed", "done")
SECRET = "root-only-secret-7Hq2"

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="root's view of the spool")


def server_user():
    return pwd.getpwnam(run_user()[0])


def wait_for(check, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture
def decoy():
    """A root-owned folder and files outside the spool: what a link would
    lead root to."""
    d = tempfile.mkdtemp(prefix="hrflow-decoy-")
    os.chmod(d, 0o711)
    secret = os.path.join(d, "secret")
    with open(secret, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret, 0o640)          # root's group may read it
    target = os.path.join(d, "target")
    with open(target, "w") as f:
        f.write("original\n")
    os.chmod(target, 0o660)          # root's group may write it
    yield d
    shutil.rmtree(d, ignore_errors=True)


def snapshot(path):
    st = os.lstat(path)
    data = open(path, "rb").read() if os.path.isfile(path) else None
    return (st.st_uid, st.st_gid, st.st_mode, data)


def unchanged(decoy, before):
    return {p: snapshot(p) for p in before} == before


def everything(decoy):
    return {os.path.join(decoy, x): snapshot(os.path.join(decoy, x))
            for x in ("", "secret", "target")}


def plant(link, to):
    """A link made by the server's user."""
    if os.path.isdir(link) and not os.path.islink(link):
        shutil.rmtree(link)
    elif os.path.lexists(link):
        os.unlink(link)
    os.symlink(to, link)
    pw = server_user()
    os.lchown(link, pw.pw_uid, pw.pw_gid)


def halt(server):
    """Stops the server by signal: apachectl -k stop checks the
    configuration first, and these configurations may fail that check.

    A graceful stop (SIGWINCH) first: these tests stop the server right
    after a request, and the event MPM's immediate stop (SIGTERM) closes
    the sockets of connections its workers are still finishing, from
    another thread -- httpd itself then crashes now and then (a child's
    SIGSEGV in apr_os_sock_get, or EBADF in process_lingering_close).
    SIGTERM only if that has not ended it."""
    try:
        pid = int(open(os.path.join(server.root, "httpd.pid")).read())
        os.kill(pid, signal.SIGWINCH)
    except (OSError, ValueError):
        return
    if not wait_for(lambda: gone(pid), 10):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        wait_for(lambda: gone(pid))



def spool_server(scratch, name, spool):
    server = Httpd(name, scratch)
    server.spool = spool
    server.write_config(f"HrflowSpool {spool}\n<Location /q>\n"
                        "    SetHandler hrflow-webhook\n"
                        "    HrflowSignature optional\n"
                        "    HrflowHandler * /bin/true\n</Location>\n")
    return server


def refused(server, path):
    """The server's parent said which path it refused and kept serving:
    the server's user must not be able to stop the server by planting a
    link before a restart.  That spool alone answers 503."""
    text = server.error_log(wait_for="answer 503 until")
    assert f"HrflowSpool: {path} " in text, text[-2000:]
    pid = int(open(os.path.join(server.root, "httpd.pid")).read())
    assert not gone(pid)
    r, body = server.request("POST", "/q", b'{"type":"a.b.c"}',
                             {"Content-Type": "application/json"})
    assert r.status == 503, body
    assert json.loads(body)["error"] == "spool_unavailable"


def refuses_and_restarts_without_following(server, path, reason, decoy,
                                           before):
    """A graceful restart leaves the decoy alone: apachectl refuses (it
    checks the configuration first), and a restart signalled straight to
    the parent (as logrotate may) keeps the server up, with the reason in
    its log and that spool refusing events.  configtest names the path
    too."""
    graceful = server.apachectl("-k", "graceful")
    pid = int(open(os.path.join(server.root, "httpd.pid")).read())
    os.kill(pid, signal.SIGUSR1)
    server.error_log(wait_for=path)
    assert unchanged(decoy, before)
    assert graceful.returncode != 0
    assert f"{path} {reason}" in graceful.stderr
    refused(server, path)
    check = server.apachectl("-t")
    assert check.returncode != 0
    assert f"HrflowSpool: {path} {reason}" in check.stderr, check.stderr


def started_spool(scratch, name):
    spool = os.path.join(scratch, name)
    shutil.rmtree(spool, ignore_errors=True)
    server = spool_server(scratch, name, spool)
    server.start()
    assert wait_for(lambda: all(os.path.isdir(os.path.join(spool, s))
                                for s in STATES))
    # The dispatcher starts a moment after the parent made the folders: a
    # test that plants a link before it watches new/ would see it fail
    # to start, which is not what the test is about.
    text = server.error_log(wait_for=f"HF00411: spool {spool}: dispatcher")
    assert f"HF00411: spool {spool}: dispatcher" in text, text[-2000:]
    return server


@pytest.mark.expect_log(r"HrflowSpool: \S+ .*refused \(remove it\); its endpoints answer 503",
                         r"spool \S+ is not ready in this process",
                         r"spool \S+: cannot watch new/: Permission denied")
@pytest.mark.parametrize("state", STATES)
def test_graceful_restart_does_not_follow_a_linked_state_folder(
        scratch, decoy, state):
    server = started_spool(scratch, f"spool-link-{state}")
    try:
        before = everything(decoy)
        plant(os.path.join(server.spool, state), decoy)
        refuses_and_restarts_without_following(
            server, f"{server.spool}/{state}", "is a symbolic link", decoy,
            before)
    finally:
        halt(server)
        shutil.rmtree(server.spool, ignore_errors=True)


@pytest.mark.expect_log(r"HrflowSpool: \S+ .*refused \(remove it\); its endpoints answer 503",
                         r"spool \S+ is not ready in this process")
@pytest.mark.parametrize("state", ("failed", "tmp", "new"))
def test_graceful_restart_refuses_a_linked_file_in_the_spool(
        scratch, decoy, state):
    server = started_spool(scratch, f"spool-file-{state}")
    try:
        before = everything(decoy)
        link = os.path.join(server.spool, state, "1-0000-x.status")
        plant(link, os.path.join(decoy, "secret"))
        refuses_and_restarts_without_following(
            server, link, "is not a regular file", decoy, before)
    finally:
        halt(server)
        shutil.rmtree(server.spool, ignore_errors=True)


@pytest.mark.parametrize("owner", ("server", "nobody"))
def test_start_refuses_a_spool_its_user_can_replace(scratch, decoy, owner):
    """DIR's parent belongs to the server's user (or another user than
    root): DIR itself can become a link, so the spool is refused even
    before one is planted."""
    parent = os.path.join(scratch, "spool-parent")
    shutil.rmtree(parent, ignore_errors=True)
    os.makedirs(parent)
    pw = server_user() if owner == "server" else pwd.getpwnam("nobody")
    os.chown(parent, pw.pw_uid, pw.pw_gid)
    spool = os.path.join(parent, "spool")
    before = everything(decoy)
    plant(spool, decoy)
    server = spool_server(scratch, "spool-parent", spool)
    try:
        reason = (f"HrflowSpool: {parent} is writable by a user other than "
                  "root")
        start = server.apachectl("-k", "start")
        time.sleep(1)
        assert unchanged(decoy, before)
        assert start.returncode != 0 and reason in start.stderr
        check = server.apachectl("-t")
        assert check.returncode != 0 and reason in check.stderr, check.stderr
        os.unlink(spool)              # a real folder: still refused
        check = server.apachectl("-t")
        assert check.returncode != 0 and reason in check.stderr
    finally:
        halt(server)
        shutil.rmtree(parent, ignore_errors=True)


# ---- hrflowctl, run as root ---------------------------------------------

def envelope(delivery, received=1795371791298842):
    return json.dumps({
        "delivery_id": delivery, "event_id": "00" * 32,
        "type": "profile.parsing.success", "order_key": None,
        "received": received, "attempt": 3, "next_attempt": 0,
        "last_result": "exit 7", "index": 0, "count": 1,
        "signature": "unsigned", "timeout": 30, "handler": ["/bin/true"],
    })[:-1] + ',\n"event":{"type":"profile.parsing.success"}}\n'


@pytest.fixture
def owned_spool(scratch):
    """A spool as Apache leaves it: every folder the server user's."""
    spool = tempfile.mkdtemp(prefix="hrflow-ctl-", dir=scratch)
    pw = server_user()
    for d in ("",) + STATES:
        path = os.path.join(spool, d)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o750)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    yield spool
    shutil.rmtree(spool, ignore_errors=True)


def put(spool, state, name, text):
    path = os.path.join(spool, state, name)
    with open(path, "w") as f:
        f.write(text)
    pw = server_user()
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def ctl(*args):
    """hrflowctl as an administrator runs it: root, in root's group."""
    return subprocess.run([HRFLOWCTL, *args], capture_output=True, text=True,
                          timeout=30, extra_groups=[0])


NAME = "1795371791298842-0000-" + "ab" * 16


def test_hrflowctl_show_and_list_read_nothing_through_links(owned_spool,
                                                            decoy):
    secret = os.path.join(decoy, "secret")
    put(owned_spool, "failed", NAME + ".json", envelope("ab" * 16))
    plant(os.path.join(owned_spool, "failed", NAME + ".status"), secret)
    plant(os.path.join(owned_spool, "failed", NAME + ".output"), secret)
    other = "1795371791298843-0000-" + "cd" * 16 + ".json"
    plant(os.path.join(owned_spool, "failed", other), secret)
    before = everything(decoy)
    shown = ctl("show", owned_spool, NAME)
    assert shown.returncode == 0, shown.stderr
    assert "state: failed" in shown.stdout
    listed = ctl("list", owned_spool)
    linked = ctl("show", owned_spool, other)
    for r in (shown, listed, linked):
        assert SECRET not in r.stdout + r.stderr
    assert "failed: 2" in listed.stdout
    assert unchanged(decoy, before)


def test_hrflowctl_requeue_writes_nothing_through_links(owned_spool, decoy):
    target = os.path.join(decoy, "target")
    put(owned_spool, "failed", NAME + ".json", envelope("ab" * 16))
    plant(os.path.join(owned_spool, "tmp", NAME + ".json"), target)
    plant(os.path.join(owned_spool, "failed", NAME + ".status"), target)
    before = everything(decoy)
    r = ctl("requeue", owned_spool, "ab" * 16)
    assert unchanged(decoy, before)
    assert r.returncode == 0, r.stderr
    queued = os.path.join(owned_spool, "new", NAME + ".json")
    assert os.path.isfile(queued) and not os.path.islink(queued)
    assert json.load(open(queued))["attempt"] == 0
    assert os.stat(queued).st_uid == server_user().pw_uid


def test_hrflowctl_drops_root_groups(owned_spool):
    """Acting as the spool's owner, hrflowctl keeps none of root's groups:
    what the owner cannot read, it does not read."""
    put(owned_spool, "failed", NAME + ".json", envelope("ab" * 16))
    status = os.path.join(owned_spool, "failed", NAME + ".status")
    with open(status, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(status, 0o640)           # root:root, readable by root's group
    r = ctl("show", owned_spool, NAME)
    assert r.returncode == 0, r.stderr
    assert "state: failed" in r.stdout
    assert SECRET not in r.stdout + r.stderr


def test_hrflowctl_lists_in_name_order(owned_spool):
    names = [f"17953717912{i:05d}-0000-{i:032x}.json" for i in range(40)]
    for i in (list(range(0, 40, 2)) + list(range(39, 0, -2))):
        put(owned_spool, "failed", names[i], envelope(f"{i:032x}"))
    r = ctl("list", owned_spool)
    assert r.returncode == 0, r.stderr
    shown = [line.split()[0] for line in r.stdout.splitlines()
             if line.startswith("  ")]
    assert shown == [f"{i:032x}" for i in range(40)]
