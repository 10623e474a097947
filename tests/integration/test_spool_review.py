"""Durable mode against local users and a killed server: a spool others can
write is refused, a body the spool cannot hold back is refused at startup,
hrflowctl shows no raw control character, and a killed Apache leaves no
dispatcher or handler behind."""
import ctypes
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BUILD, Httpd
from test_spool_symlinks import (halt, gone, refused, server_user,
                                 started_spool, wait_for)

HRFLOWCTL = os.path.join(BUILD, "tools", "hrflowctl")
JSON = {"Content-Type": "application/json"}
SPOOL_MAX_BODY = 64 * 1024 * 1024 - 1024 * 1024   # HF_SPOOL_MAX_BODY

as_root = pytest.mark.skipif(os.geteuid() != 0,
                             reason="root starts Apache and its dispatcher")


# ---- 1. a spool folder others can write -------------------------------------

def writable_reason(path):
    return (f"{path} is writable by its group or others (mode 0777): "
            "refused (chmod 0750 it)")


@as_root
@pytest.mark.expect_log(r"HrflowSpool: \S+ is writable by its group or others"
                        r" \(mode 0777\): refused \(chmod 0750 it\); its "
                        r"endpoints answer 503",
                        r"spool \S+ is not ready in this process")
@pytest.mark.parametrize("where", ("", "new"))
def test_spool_folder_others_can_write_is_refused(scratch, where):
    """Anyone who can add a file to the spool runs its handler as the
    server's user: DIR and its state folders may be written by that user
    alone."""
    server = started_spool(scratch, f"spool-mode-{where or 'top'}")
    path = os.path.join(server.spool, where) if where else server.spool
    try:
        os.chmod(path, 0o777)
        check = server.apachectl("-t")
        assert check.returncode != 0
        assert "HrflowSpool: " + writable_reason(path) in check.stderr, \
            check.stderr
        pid = int(open(os.path.join(server.root, "httpd.pid")).read())
        os.kill(pid, signal.SIGUSR1)        # as logrotate may
        server.error_log(wait_for=writable_reason(path))
        refused(server, path)
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o777)
    finally:
        halt(server)
        shutil.rmtree(server.spool, ignore_errors=True)


@as_root
@pytest.mark.expect_log(r"spool: \S+\.json: \S+ is owned by uid \d+, not by "
                        r"the spool's user \(uid \d+\): refused",
                        r"event \S+ .* moved to \S+/failed/")
def test_a_spool_file_of_another_user_never_runs(scratch):
    """Were a folder opened to others after startup, a file another user
    put in new/ still names no handler that runs as the server's user."""
    server = started_spool(scratch, "spool-foreign")
    out = os.path.join(scratch, "foreign-out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    os.chmod(out, 0o777)            # the server's user may write here
    marker = os.path.join(out, "ran")
    try:
        name = "1795371791298842-0000-" + "ef" * 16 + ".json"
        text = json.dumps({
            "delivery_id": "ef" * 16, "event_id": None, "type": "a.b.c",
            "order_key": None, "received": 1795371791298842, "attempt": 0,
            "next_attempt": 0, "last_result": None, "index": 0, "count": 1,
            "signature": "verified", "timeout": 30,
            "handler": ["/bin/sh", "-c", f"id > {marker}"],
        })[:-1] + ',\n"event":{"type":"a.b.c"}}\n'
        tmp = os.path.join(server.spool, "tmp", name)
        with open(tmp, "w") as f:
            f.write(text)
        nobody = pwd.getpwnam("nobody")
        os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
        os.rename(tmp, os.path.join(server.spool, "new", name))
        failed = os.path.join(server.spool, "failed", name[:-5] + ".status")
        assert wait_for(lambda: os.path.exists(failed) or
                        os.path.exists(marker), 30)
        assert not os.path.exists(marker), "nobody's handler ran"
        assert "is owned by uid %d" % nobody.pw_uid in open(failed).read()
    finally:
        halt(server)
        shutil.rmtree(server.spool, ignore_errors=True)


# ---- 2. a body the spool cannot read back -----------------------------------

@pytest.mark.parametrize("max_body,ok", [(SPOOL_MAX_BODY, True),
                                         (SPOOL_MAX_BODY + 1, False),
                                         (1 << 30, False)])
def test_durable_max_body_must_fit_a_spool_file(scratch, max_body, ok):
    """A 202 for an event the dispatcher can never read is refused at
    configtest, naming both numbers."""
    spool = os.path.join(scratch, f"spool-max-{max_body}")
    server = Httpd(f"spool-max-{max_body}", scratch)
    server.write_config(f"HrflowSpool {spool}\n<Location /q>\n"
                        "    SetHandler hrflow-webhook\n"
                        "    HrflowSignature optional\n"
                        f"    HrflowMaxBody {max_body}\n"
                        "    HrflowHandler * /bin/true\n</Location>\n")
    try:
        check = server.apachectl("-t")
        if ok:
            assert check.returncode == 0, check.stderr
        else:
            assert check.returncode != 0
            assert (f"HrflowMaxBody: {max_body} bytes is more than a spool "
                    "file holds in durable mode (HrflowSpool): at most "
                    f"{SPOOL_MAX_BODY}") in check.stderr, check.stderr
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def test_synchronous_max_body_keeps_its_ceiling(scratch):
    server = Httpd("sync-max", scratch)
    server.write_config("<Location /q>\n    SetHandler hrflow-webhook\n"
                        "    HrflowSignature optional\n"
                        "    HrflowMaxBody 1073741824\n"
                        "    HrflowHandler * /bin/true\n</Location>\n")
    check = server.apachectl("-t")
    assert check.returncode == 0, check.stderr


# ---- 3. hrflowctl and the spool's bytes --------------------------------------

NASTY = "\033[2J\033]0;title\007"


@as_root
@pytest.mark.expect_log(r"handler=\S*/shout\S* result=exit 3",
                        r"event \S+ output: ",
                        r"event \S+ .* failed 1 time: moved to \S+/failed/")
def test_hrflowctl_show_escapes_control_characters(scratch):
    handler = os.path.join(scratch, "shout-esc.sh")
    with open(handler, "w") as f:
        f.write("#!/bin/sh\ncat > /dev/null\n"
                "printf '\\033[2J\\033]0;title\\007\\tok\\n' >&2\n"
                "printf '\\033[2J\\033]0;title\\007\\n'\nexit 3\n")
    os.chmod(handler, 0o755)
    spool = os.path.join(scratch, "spool-esc")
    shutil.rmtree(spool, ignore_errors=True)
    server = Httpd("spool-esc", scratch)
    server.write_config(f"HrflowSpool {spool}\nHrflowRetry 0\n"
                        "<Location /q>\n    SetHandler hrflow-webhook\n"
                        "    HrflowSignature optional\n"
                        f"    HrflowHandler * {handler}\n</Location>\n")
    server.start()
    try:
        body = json.dumps({"type": "a.b.c", "m": NASTY}).encode()
        r, _ = server.request("POST", "/q", body, JSON)
        assert r.status == 202
        failed = os.path.join(spool, "failed")
        # The status and output are written before the event moves in.
        assert wait_for(lambda: {n.rsplit(".", 1)[-1]
                                 for n in os.listdir(failed)}
                        >= {"output", "json"}, 30)
        name = next(n for n in os.listdir(failed) if n.endswith(".json"))
        with open(os.path.join(failed, name[:-5] + ".output")) as f:
            assert "\033" in f.read()          # the raw bytes are there
        for args in (("show", spool, name[:-5]), ("list", spool)):
            out = subprocess.run([HRFLOWCTL, *args], capture_output=True,
                                 timeout=30)
            assert out.returncode == 0, out.stderr
            text = out.stdout + out.stderr
            assert b"\033" not in text and b"\007" not in text, text
        shown = subprocess.run([HRFLOWCTL, "show", spool, name[:-5]],
                               capture_output=True, timeout=30).stdout
        assert b"\\x1b[2J\\x1b]0;title\\x07\tok\n" in shown, shown
    finally:
        server.stop()
        shutil.rmtree(spool, ignore_errors=True)


# ---- 4. Apache's parent killed with -9 --------------------------------------

PR_SET_CHILD_SUBREAPER = 36


def subreaper(on):
    """While on, orphans become this process's children, which it leaves
    unreaped: a killed dispatcher stays a zombie, as where nothing reaps
    orphans (containers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0


def alive(pid):
    return not gone(pid)


def reap():
    """The zombies this process was given while it was the reaper."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def linger_server(scratch, name):
    out = os.path.join(scratch, name + "-out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    os.chmod(out, 0o777)
    spool = os.path.join(scratch, name)
    shutil.rmtree(spool, ignore_errors=True)
    server = Httpd(name, scratch)
    server.spool, server.out = spool, out
    server.write_config(f"HrflowSpool {spool}\nHrflowRetryDelay 1\n"
                        "<Location /q>\n    SetHandler hrflow-webhook\n"
                        "    HrflowSignature optional\n"
                        f"    HrflowHandler * {scratch}/handlers/linger.sh "
                        f"{out}\n</Location>\n")
    return server


def dispatcher_of(server):
    try:
        return int(open(os.path.join(server.spool,
                                     "dispatcher.pid")).read())
    except (OSError, ValueError):
        return None


def linger_runs(server):
    try:
        return open(os.path.join(server.out, "linger.log")).read().split("\n")
    except OSError:
        return []


def kill_mid_handler(server, also_dispatcher):
    """Starts the server with this process as the orphans' reaper, posts an
    event whose first try hangs, kills Apache's parent (and the dispatcher)
    with -9.  The pids: parent, dispatcher, handler shell, its child."""
    subreaper(True)
    try:
        server.start()
        r, _ = server.request("POST", "/q", b'{"type":"a.b.c","k":1}', JSON)
        assert r.status == 202
        pids = os.path.join(server.out, "linger.pids")
        assert wait_for(lambda: os.path.exists(pids) and
                        len(open(pids).read().split()) == 2, 30)
        shell, child = map(int, open(pids).read().split())
        parent = int(open(os.path.join(server.root, "httpd.pid")).read())
        dispatcher = dispatcher_of(server)
        assert dispatcher and alive(dispatcher)
        children = [int(k) for k in subprocess.run(
            ["pgrep", "-P", str(parent)], capture_output=True,
            text=True).stdout.split()]
        os.kill(parent, signal.SIGKILL)
        if also_dispatcher:
            os.kill(dispatcher, signal.SIGKILL)
        for pid in children:          # Apache's own, which hold the port
            if pid != dispatcher:
                os.kill(pid, signal.SIGKILL)
        # Once the parent is a zombie its children are this process's.
        assert wait_for(lambda: gone(parent), 15)
    finally:
        subreaper(False)
    return parent, dispatcher, shell, child


def restart_and_check(server, parent, dispatcher, shell, child):
    """Started again: the event runs to success once, on its second try,
    and nothing of the old session lives on."""
    os.unlink(os.path.join(server.root, "httpd.pid"))
    server.start()
    assert wait_for(lambda: any(line.endswith(" ok")
                                for line in linger_runs(server)), 30)
    time.sleep(2)        # a second run would show by now
    ok = [line for line in linger_runs(server) if line.endswith(" ok")]
    assert len(ok) == 1 and ok[0].split()[1] == "2", linger_runs(server)
    for pid in (dispatcher, shell, child):
        assert not alive(pid), pid
    assert not os.listdir(os.path.join(server.spool, "run"))


@as_root
@pytest.mark.expect_log(r"handler=\S*/linger\.sh result=stopped",
                        r"spool \S+: killed \d+ process(es)? left by "
                        r"dispatcher \d+")
def test_kill_9_of_the_parent_ends_the_dispatcher(scratch):
    """Its parent-death signal must survive the privilege drop: the
    dispatcher stops (ending its handler) as soon as Apache's parent dies,
    not after the next start found the spool locked."""
    server = linger_server(scratch, "spool-orphan")
    pids = ()
    try:
        pids = kill_mid_handler(server, also_dispatcher=False)
        parent, dispatcher, shell, child = pids
        assert wait_for(lambda: not alive(dispatcher), 15), \
            "the dispatcher outlived Apache's parent"
        assert wait_for(lambda: not alive(shell) and not alive(child), 15)
        restart_and_check(server, *pids)
    finally:
        halt(server)
        for pid in pids[1:]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        reap()
        shutil.rmtree(server.spool, ignore_errors=True)


@as_root
@pytest.mark.expect_log(r"handler=\S*/linger\.sh result=stopped",
                        r"spool \S+: killed \d+ process(es)? left by "
                        r"dispatcher \d+")
def test_a_zombie_dispatcher_is_dead(scratch):
    """Apache's parent and the dispatcher killed with -9, nothing reaps
    the dispatcher: the next one must still end the old session's
    handlers before it runs their events again."""
    server = linger_server(scratch, "spool-zombie")
    pids = ()
    try:
        pids = kill_mid_handler(server, also_dispatcher=True)
        parent, dispatcher, shell, child = pids
        assert wait_for(lambda: gone(dispatcher), 15)
        assert alive(child)           # left behind until the next start
        restart_and_check(server, *pids)
        assert re.search(r"killed \d+ process(es)? left by dispatcher "
                         f"{dispatcher}", server.error_log())
    finally:
        halt(server)
        for pid in pids[1:]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        reap()
        shutil.rmtree(server.spool, ignore_errors=True)
