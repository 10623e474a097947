"""mod_hrflow the way Debian runs it: a copy of /etc/apache2 with its default
modules, `a2enmod hrflow`, the shipped example vhost (absolute paths) and a
site with many endpoints, through cold starts and graceful restarts.

Every endpoint must run its own handler after each of them: strings a
configuration keeps that live in a pool httpd frees after the config pass
show up only with a real server's memory layout, not in small test configs.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import (BUILD, CRASH_MARKS, HERE, MODULE, SECRETS, free_port,
                      httpd_env)
from hrflow_sign import signed_value

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
CONFDIR = "/etc/apache2"
ENDPOINTS = 40
COLD_STARTS = 3
GRACEFULS = 2
# The example vhost's three handlers, in order, and an event type each one
# maps; each is replaced by a recorder of that name.
EXAMPLE_TYPES = {"example-0": "profile.parsing.success",
                 "example-1": "job.storing.update",
                 "example-2": "profile.scoring.error"}

pytestmark = pytest.mark.skipif(
    not (os.path.isdir(CONFDIR) and shutil.which("a2enmod")
         and os.geteuid() == 0),
    reason="needs Debian's apache2 package and root")


def sh(*args, env=None):
    r = subprocess.run(args, capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, f"{args}: {r.stdout}{r.stderr}"
    return r.stdout


def make_recorder(path):
    """A handler program that keeps each run's type in the folder its first
    argument names: one folder per handler shows who ran what."""
    with open(path, "w") as f:
        f.write('#!/bin/sh\nprintf "%s %s\\n" "$HRFLOW_TYPE" '
                '"$HRFLOW_DELIVERY_ID" >> "$1/runs.log"\ncat >/dev/null\n')
    os.chmod(path, 0o755)


class DebianApache:
    """A copy of /etc/apache2 with its envvars pointed into a scratch folder
    and Listen on a free loopback port, driven by apache2ctl."""

    def __init__(self, top):
        self.top = top
        self.confdir = os.path.join(top, "apache2")
        shutil.copytree(CONFDIR, self.confdir, symlinks=True)
        self.port = free_port()
        for sub in ("run", "lock", "log", "state", "handlers", "out"):
            os.makedirs(os.path.join(top, sub), exist_ok=True)
        with open(os.path.join(self.confdir, "ports.conf"), "w") as f:
            f.write(f"Listen 127.0.0.1:{self.port}\n")
        with open(os.path.join(self.confdir, "envvars"), "a") as f:
            f.write(f"\nexport APACHE_RUN_DIR={top}/run\n"
                    f"export APACHE_PID_FILE={top}/run/apache2.pid\n"
                    f"export APACHE_LOCK_DIR={top}/lock\n"
                    f"export APACHE_LOG_DIR={top}/log\n")
        self.env = dict(httpd_env(), APACHE_CONFDIR=self.confdir,
                        APACHE_STATE_DIRECTORY=os.path.join(top, "state"))

    def install_module(self):
        """What `make install` puts in mods-available, for the fresh build."""
        avail = os.path.join(self.confdir, "mods-available")
        load = open(os.path.join(TOP, "conf", "hrflow.load.in")).read()
        with open(os.path.join(avail, "hrflow.load"), "w") as f:
            f.write(re.sub(r"\S*/mod_hrflow\.so", MODULE, load))
        shutil.copy(os.path.join(TOP, "conf", "hrflow.conf"), avail)
        sh("a2enmod", "-q", "hrflow", env=self.env)
        assert os.path.islink(
            os.path.join(self.confdir, "mods-enabled", "hrflow.load"))

    def use_mpm(self, mpm):
        """Debian's way of changing the MPM: one a2dismod, one a2enmod."""
        enabled = os.path.join(self.confdir, "mods-enabled")
        for current in ("event", "worker", "prefork"):
            if current != mpm and os.path.exists(
                    os.path.join(enabled, f"mpm_{current}.load")):
                sh("a2dismod", "-q", f"mpm_{current}", env=self.env)
        sh("a2enmod", "-q", f"mpm_{mpm}", env=self.env)

    def add_site(self, name, text):
        path = os.path.join(self.confdir, "sites-available", name + ".conf")
        with open(path, "w") as f:
            f.write(text)
        sh("a2ensite", "-q", name, env=self.env)

    def ctl(self, *args):
        return subprocess.run(["apache2ctl", *args], capture_output=True,
                              text=True, env=self.env, timeout=120)

    def pid(self):
        try:
            return int(open(os.path.join(self.top, "run",
                                         "apache2.pid")).read())
        except (OSError, ValueError):
            return None

    def start(self):
        r = self.ctl("start")
        assert r.returncode == 0, r.stdout + r.stderr + self.logs()
        self.wait_up()

    def wait_up(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/", timeout=2).read()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("apache2 did not come up\n" + self.logs())

    def graceful(self):
        before = self.generation()
        r = self.ctl("graceful")
        assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.time() + 20
        while self.generation() == before and time.time() < deadline:
            time.sleep(0.1)
        self.wait_up()

    def generation(self):
        return self.logs().count("resuming normal operations")

    def stop(self):
        pid = self.pid()
        if pid is None:
            return
        self.ctl("stop")
        for _ in range(200):
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except OSError:
                break
        # A killed parent can stay a zombie here; the pid file must go.
        try:
            os.unlink(os.path.join(self.top, "run", "apache2.pid"))
        except OSError:
            pass

    def logs(self):
        text = ""
        logdir = os.path.join(self.top, "log")
        for name in sorted(os.listdir(logdir)):
            if "error" in name:
                text += open(os.path.join(logdir, name),
                             errors="replace").read()
        return text

    def post(self, path, host, secret, event):
        payload = json.dumps(event).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=b"", method="POST",
            headers={"Host": host, "Content-Type": "application/json",
                     "HTTP-HRFLOW-SIGNATURE": signed_value(secret, payload)})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def example_vhost(server, secret_file, spool):
    """The shipped example with its paths pointed into the scratch folder:
    every path stays absolute, as an administrator writes it."""
    text = open(os.path.join(BUILD, "conf", "hrflow-example.conf")).read()
    # Ready for a2ensite: every path it names is where make install puts it.
    for m in re.finditer(r"^\s*HrflowHandler\s+\S+\s+(\S+)", text, re.M):
        assert os.path.basename(m.group(1)) in ("show-env.sh", "log-event.sh")
        assert "@" not in m.group(1)
    text, n = re.subn(r"<VirtualHost \*:\d+>",
                      f"<VirtualHost *:{server.port}>", text)
    assert n == 1
    text, n = re.subn(r"^(\s*)HrflowSecretFile \S+",
                      lambda m: f"{m.group(1)}HrflowSecretFile {secret_file}",
                      text, flags=re.M)
    assert n == 1

    order = iter(EXAMPLE_TYPES)

    def handler(m):
        name = next(order)
        program = os.path.join(server.top, "handlers", name)
        out = os.path.join(server.top, "out", name)
        make_recorder(program)
        os.makedirs(out, exist_ok=True)
        os.chmod(out, 0o777)
        return f"{m.group(1)}HrflowHandler {m.group(2)} {program} {out}"

    text, n = re.subn(r"^(\s*)HrflowHandler\s+(\S+)\s+(\S+).*$", handler, text,
                      flags=re.M)
    assert n == len(EXAMPLE_TYPES)
    if spool:
        text, n = re.subn(r"^(\s*)#HrflowSpool \S+",
                          lambda m: f"{m.group(1)}HrflowSpool {spool}",
                          text, flags=re.M)
        assert n == 1
        text = re.sub(r"^(\s*)#(HrflowRetry\w* )", r"\1\2", text, flags=re.M)
    return text


def many_endpoints(server, spool, durable=()):
    """A second site: ENDPOINTS locations, each with its own secret and a
    handler program of its own, long absolute paths all; in durable mode it
    shares the example's spool, and so its durable settings (one spool has
    one dispatcher: configtest refuses different ones)."""
    lines = [f"<VirtualHost *:{server.port}>", "    ServerName many.test"]
    if spool:
        lines.append(f"    HrflowSpool {spool}")
        lines += [f"    {x}" for x in durable]
    deep = os.path.join(server.top, "handlers", "a-rather-long-folder-name"
                        "-for-handler-programs", "of-the-many-endpoints")
    os.makedirs(deep, exist_ok=True)
    for i in range(ENDPOINTS):
        program = os.path.join(deep, f"endpoint-{i:03d}-handler")
        out = os.path.join(server.top, "out", f"ep{i}")
        make_recorder(program)
        os.makedirs(out, exist_ok=True)
        os.chmod(out, 0o777)
        lines += [f"    <Location /ep{i}>", "        SetHandler hrflow-webhook",
                  f"        HrflowSecret endpoint-{i}-secret-{'x' * (i % 7)}",
                  f"        HrflowHandler profile.* {program} {out}",
                  "    </Location>"]
    return "\n".join(lines + ["</VirtualHost>", ""])


def runs(server, folder):
    try:
        text = open(os.path.join(server.top, "out", folder, "runs.log")).read()
    except OSError:
        return []
    return [line.split() for line in text.splitlines()]


def wait_for_runs(server, folder, n, timeout=30):
    deadline = time.time() + timeout
    while len(runs(server, folder)) < n and time.time() < deadline:
        time.sleep(0.1)
    return runs(server, folder)


@pytest.fixture(params=["sync", "spool"])
def debian(request):
    top = tempfile.mkdtemp(prefix="hrflow-debian-")
    os.chmod(top, 0o755)
    server = DebianApache(top)
    secret_file = os.path.join(top, "hrflow.secrets")
    with open(secret_file, "w") as f:
        f.write(f"# rotation in progress\n{SECRETS[0]}\n{SECRETS[1]}\n")
    os.chmod(secret_file, 0o600)
    spool = os.path.join(top, "spool") if request.param == "spool" else None
    server.use_mpm(os.environ.get("HRFLOW_MPM", "event"))
    server.install_module()
    site = example_vhost(server, secret_file, spool)
    server.add_site("hrflow", site)
    durable = re.findall(r"^\s*(Hrflow(?:Retry\w*|Concurrency) \S+)", site,
                         re.M)
    server.add_site("hrflow-many", many_endpoints(server, spool, durable))
    server.spool = spool
    r = server.ctl("configtest")
    assert r.returncode == 0, r.stdout + r.stderr
    yield server
    server.stop()
    logs = server.logs()
    shutil.rmtree(top, ignore_errors=True)
    for mark in CRASH_MARKS:
        assert mark not in logs, logs[-3000:]
    for secret in SECRETS:
        assert secret not in logs


def every_endpoint_runs_its_handler(server, round_no):
    """One event to each endpoint; each lands with its own handler."""
    ok = 202 if server.spool else 200
    for name, etype in EXAMPLE_TYPES.items():
        status, body = server.post("/hrflow", "hooks.example.com",
                                   SECRETS[round_no % 2], {"type": etype})
        assert status == ok, body
    for i in range(ENDPOINTS):
        status, body = server.post(
            f"/ep{i}", "many.test", f"endpoint-{i}-secret-{'x' * (i % 7)}",
            {"type": "profile.storing.update", "profile": {"key": f"p{i}"}})
        assert status == ok, (i, body)
    for name, etype in EXAMPLE_TYPES.items():
        got = wait_for_runs(server, name, round_no + 1)
        assert len(got) == round_no + 1, (name, got, server.logs()[-2000:])
        assert {r[0] for r in got} == {etype}
    for i in range(ENDPOINTS):
        got = wait_for_runs(server, f"ep{i}", round_no + 1)
        assert len(got) == round_no + 1, (i, got, server.logs()[-2000:])


def test_cold_starts_and_graceful_restarts(debian):
    round_no = 0
    for _ in range(COLD_STARTS):
        debian.start()
        every_endpoint_runs_its_handler(debian, round_no)
        round_no += 1
        debian.stop()
    debian.start()
    for _ in range(GRACEFULS):
        debian.graceful()
        every_endpoint_runs_its_handler(debian, round_no)
        round_no += 1
    assert "cannot run" not in debian.logs()
    assert "is not ready" not in debian.logs()
