"""Apache idioms: httpd's own argument handling and contexts, a server
config for durable mode, paths under ServerRoot, httpd's time syntax,
numbered log lines, and handlers checked as the server's User."""
import json
import os
import re
import subprocess

import pytest

from conftest import (CGI, MODULES_DIR, Httpd, records, run_user,
                      wait_until)

EVENT = json.dumps({"type": "profile.parsing.success",
                    "profile": {"key": "k1"}}).encode()
JSON = {"Content-Type": "application/json"}


def configtest(scratch, name, text):
    server = Httpd("idioms-" + name, scratch)
    server.write_config(text)
    return server.apachectl("-t")


def endpoint(scratch, body, path="/hook"):
    return (f"<Location {path}>\nSetHandler hrflow-webhook\nHrflowSecret s\n"
            f"HrflowHandler * {scratch}/handlers/fail.sh\n{body}\n"
            "</Location>\n")


# ---- 1. directives through httpd's argument handling ----------------------

@pytest.mark.parametrize("directive", ["HrflowSpool /tmp/x",
                                       "HrflowConcurrency 2", "HrflowRetry 1",
                                       "HrflowRetryDelay 3"])
def test_server_directive_in_location_refused_by_httpd(scratch, directive):
    r = configtest(scratch, "ctx", endpoint(scratch, directive))
    assert r.returncode != 0
    name = directive.split()[0]
    # httpd's own message for a directive outside its RSRC_CONF context.
    assert f"{name} not allowed in <Location> context" in r.stderr, r.stderr


def test_take1_directive_with_two_arguments_is_refused_by_httpd(scratch):
    r = configtest(scratch, "take1", endpoint(scratch, "HrflowTimeout 3 4"))
    assert r.returncode != 0
    assert "HrflowTimeout takes one argument" in r.stderr, r.stderr


def test_server_directives_allowed_in_virtual_host(scratch):
    server = Httpd("idioms-vhost-ok", scratch)
    spool = os.path.join(server.root, "spool")
    server.write_config(
        f"<VirtualHost 127.0.0.1:{server.port}>\nServerName a.test\n"
        f"HrflowSpool {spool}\nHrflowConcurrency 2\nHrflowRetry 1\n"
        "HrflowRetryDelay 3\n" + endpoint(scratch, "") + "</VirtualHost>\n")
    r = server.apachectl("-t")
    assert r.returncode == 0, r.stderr


# ---- 2. durable mode's settings are the server's --------------------------

def vhost(server, name, body):
    return (f"<VirtualHost 127.0.0.1:{server.port}>\nServerName {name}\n"
            f"{body}</VirtualHost>\n")


def test_vhosts_with_own_spools_keep_their_own_settings(scratch):
    server = Httpd("idioms-two-spools", scratch)
    a, b = (os.path.join(server.root, x) for x in ("spool-a", "spool-b"))
    server.write_config(
        vhost(server, "a.test", f"HrflowSpool {a}\nHrflowConcurrency 2\n"
              "HrflowRetry 0\n" + endpoint(scratch, ""))
        + vhost(server, "b.test", f"HrflowSpool {b}\nHrflowConcurrency 3\n"
                "HrflowRetry 7\n" + endpoint(scratch, "")))
    server.start()
    try:
        log = server.error_log(wait_for=f"spool {b}: dispatcher")
        log = server.error_log(wait_for=f"spool {a}: dispatcher")
        assert re.search(rf"spool {a}: dispatcher \d+ started: \d+ waiting, "
                         r"2 at once, 0 retries", log), log
        assert re.search(rf"spool {b}: dispatcher \d+ started: \d+ waiting, "
                         r"3 at once, 7 retries", log), log
    finally:
        server.stop()


def test_vhosts_sharing_a_spool_with_different_settings_refused(scratch):
    server = Httpd("idioms-shared-spool", scratch)
    spool = os.path.join(server.root, "spool")
    server.write_config(
        f"HrflowSpool {spool}\n"
        + vhost(server, "a.test", endpoint(scratch, ""))
        + vhost(server, "b.test", "HrflowRetry 0\n" + endpoint(scratch, "")))
    r = server.apachectl("-t")
    assert r.returncode != 0
    # b.test inherits the main server's spool but not its retries.
    assert (f"HrflowSpool {spool}: the main server and virtual host b.test "
            f"({server.conf} line" in r.stderr), r.stderr
    assert "with different settings (HrflowRetry 5 and 0)" in r.stderr, \
        r.stderr


def test_vhosts_sharing_a_spool_with_the_same_settings_pass(scratch):
    server = Httpd("idioms-shared-same", scratch)
    spool = os.path.join(server.root, "spool")
    server.write_config(
        f"HrflowSpool {spool}\nHrflowRetry 2\n"
        + vhost(server, "a.test", endpoint(scratch, ""))
        + vhost(server, "b.test", f"HrflowSpool {spool}\nHrflowRetry 2\n"
                + endpoint(scratch, "")))
    r = server.apachectl("-t")
    assert r.returncode == 0, r.stderr


def test_one_spool_under_two_names_through_a_link_refused(scratch):
    # Two dispatchers would share one folder, the second waiting forever
    # for the first one's lock.
    server = Httpd("idioms-linked-spool", scratch)
    real = os.path.join(server.root, "real")
    os.makedirs(os.path.join(real, "spool"), exist_ok=True)
    os.symlink(real, os.path.join(server.root, "alias"))
    a = os.path.join(real, "spool")
    b = os.path.join(server.root, "alias", "spool")
    server.write_config(
        vhost(server, "a.test", f"HrflowSpool {a}\n" + endpoint(scratch, ""))
        + vhost(server, "b.test", f"HrflowSpool {b}\n"
                + endpoint(scratch, "")))
    r = server.apachectl("-t")
    assert r.returncode != 0
    assert "HF00108: HrflowSpool " in r.stderr, r.stderr
    assert f"HrflowSpool {a} (virtual host a.test" in r.stderr, r.stderr
    assert f"HrflowSpool {b} (virtual host b.test" in r.stderr, r.stderr
    assert "are one folder: name it the same way in both" in r.stderr


# ---- 3. paths under ServerRoot, httpd's times, listeners closed ------------

def test_relative_paths_resolve_under_server_root(scratch, out):
    server = Httpd("idioms-relative", scratch)
    # ServerRoot is scratch/servers/NAME: the handlers are two folders up.
    with open(os.path.join(server.root, "secrets"), "w") as f:
        f.write("relative-secret\n")
    server.write_config(
        "<Location /rel>\nSetHandler hrflow-webhook\n"
        "HrflowSecretFile ./secrets\nHrflowSignature optional\n"
        f"HrflowHandler * ../../handlers/record.sh {out}\n</Location>\n")
    server.start()
    try:
        r, data = server.request("POST", "/rel", EVENT, JSON)
        assert r.status == 200, data
        runs = records(out)
        assert len(runs) == 1
        assert runs[0]["cwd"] == os.path.join(scratch, "handlers")
    finally:
        server.stop()


def test_one_spool_folder_under_two_relative_names_is_one_spool(scratch):
    server = Httpd("idioms-relative-spool", scratch)
    server.write_config(
        f"LoadModule status_module {MODULES_DIR}/mod_status.so\n"
        "<Location /server-status>\nSetHandler server-status\n</Location>\n"
        "HrflowSpool ./spool\n"
        + vhost(server, "b.test", "HrflowSpool spool/\n"
                + endpoint(scratch, "")))
    spool = os.path.join(server.root, "spool")
    server.start()
    try:
        server.error_log(wait_for=f"spool {spool}: dispatcher")
        r, data = server.request("GET", "/server-status?auto")
        assert r.status == 200
        # One folder, one dispatcher: one section in mod_status.
        assert data.decode().count("HrflowQueued:") == 1, data
    finally:
        server.stop()


def test_timeout_in_milliseconds_stops_the_handler(scratch, out):
    server = Httpd("idioms-timeout-ms", scratch)
    server.write_config(
        "<Location /nap>\nSetHandler hrflow-webhook\n"
        "HrflowSignature optional\nHrflowTimeout 500ms\n"
        f"HrflowHandler * {scratch}/handlers/nap.sh {out} 20\n</Location>\n")
    server.start()
    try:
        r, data = server.request("POST", "/nap", EVENT, JSON)
        assert r.status == 500, data
        assert json.loads(data)["error"] == "handler_failed"
        log = server.error_log(wait_for="result=timeout")
        assert "result=timeout" in log
    finally:
        server.stop()


# The handler's timeout is logged at error level on purpose.
test_timeout_in_milliseconds_stops_the_handler = pytest.mark.expect_log(
    r"result=timeout")(test_timeout_in_milliseconds_stops_the_handler)


@pytest.mark.parametrize("value", ["500ms", "30s", "2min", "1h", "45"])
def test_cgi_conffile_takes_httpd_times(scratch, value):
    conf = os.path.join(scratch, "cgi-time.conf")
    with open(conf, "w") as f:      # root's, as the checking user
        f.write("HrflowSignature optional\n"
                f"HrflowTimeout {value}\nHrflowHandler * /bin/true\n")
    os.chmod(conf, 0o600)
    r = subprocess.run([CGI, "--check", conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def listening_inodes(port):
    """Inodes of the listening TCP sockets on port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                found.add(f[9])
    return found


def socket_inodes(pid):
    found = set()
    d = f"/proc/{pid}/fd"
    for name in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


@pytest.mark.skipif((os.cpu_count() or 1) < 2,
                    reason="one listener bucket per CPU: needs two CPUs")
def test_dispatcher_keeps_no_listening_socket(scratch):
    server = Httpd("idioms-listeners", scratch)
    spool = os.path.join(server.root, "spool")
    # Listener buckets duplicate each listening socket (SO_REUSEPORT):
    # the dispatcher must close the duplicates too.
    server.write_config("ListenCoresBucketsRatio 1\n"
                        f"HrflowSpool {spool}\n" + endpoint(scratch, ""))
    server.start()
    try:
        pidfile = os.path.join(spool, "dispatcher.pid")
        pid = wait_until(lambda: os.path.exists(pidfile)
                         and int(open(pidfile).read() or 0))
        assert pid, server.error_log()
        listening = listening_inodes(server.port)
        assert len(listening) >= 2     # the buckets are there
        assert not socket_inodes(pid) & listening
    finally:
        server.stop()


# ---- 6. handlers checked as the server's User, not as root -----------------

needs_root = pytest.mark.skipif(os.geteuid() != 0 or run_user()[1] is None,
                                reason="httpd changes users only as root")


def handler_copy(scratch, name, mode, folder_mode=0o755, group=0):
    """A copy of fail.sh in a folder of its own, owned by root."""
    d = os.path.join(scratch, "exec-" + name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, folder_mode)
    path = os.path.join(d, "handler.sh")
    with open(os.path.join(scratch, "handlers", "fail.sh")) as src, \
            open(path, "w") as dst:
        dst.write(src.read())
    os.chown(path, 0, group)
    os.chmod(path, mode)
    return path


def handler_configtest(scratch, name, path):
    return configtest(scratch, "exec-" + name,
                      "<Location /hook>\nSetHandler hrflow-webhook\n"
                      f"HrflowSecret s\nHrflowHandler * {path}\n</Location>\n")


@needs_root
def test_handler_only_root_can_run_fails_configtest(scratch):
    path = handler_copy(scratch, "root-only", 0o700)
    r = handler_configtest(scratch, "root-only", path)
    assert r.returncode != 0
    user = run_user()[0]
    assert (f"HrflowHandler: cannot run {path}: user {user} cannot execute "
            "it (mode 0700, owner uid 0" in r.stderr), r.stderr
    assert "(endpoint /hook" in r.stderr


@needs_root
def test_handler_in_a_folder_the_user_cannot_enter_fails_configtest(scratch):
    path = handler_copy(scratch, "closed-folder", 0o755, folder_mode=0o700)
    r = handler_configtest(scratch, "closed-folder", path)
    assert r.returncode != 0
    assert (f"HrflowHandler: cannot run {path}: user {run_user()[0]} cannot "
            f"enter {os.path.dirname(path)} (mode 0700" in r.stderr), r.stderr


@needs_root
def test_handler_the_users_group_may_run_passes(scratch):
    import grp
    gid = grp.getgrnam(run_user()[1]).gr_gid
    path = handler_copy(scratch, "group", 0o750, group=gid)
    r = handler_configtest(scratch, "group", path)
    assert r.returncode == 0, r.stderr


# ---- 5. numbered log lines, the version at startup, debug lines ------------

def package_version():
    here = os.path.dirname(os.path.abspath(__file__))
    text = open(os.path.join(here, "..", "..", "configure.ac")).read()
    return re.search(r"AC_INIT\(\[[^]]*\], \[([^]]*)\]", text).group(1)


def record_endpoint(scratch, out):
    return ("<Location /rec>\nSetHandler hrflow-webhook\n"
            "HrflowSignature optional\n"
            f"HrflowHandler profile.* {scratch}/handlers/record.sh {out}\n"
            "</Location>\n")


def test_version_logged_once_per_start_and_restart(scratch):
    server = Httpd("idioms-version", scratch)
    server.write_config(endpoint(scratch, ""))
    line = f"HF00107: mod_hrflow {package_version()} configured"
    r = server.apachectl("-t")
    assert r.returncode == 0 and line not in r.stderr, r.stderr
    server.start()
    try:
        assert server.error_log(wait_for=line).count(line) == 1
        assert "[hrflow:info]" in [x for x in server.error_log().splitlines()
                                   if line in x][0]
        server.apachectl("-k", "graceful")
        assert wait_until(lambda: server.error_log().count(line) == 2), \
            server.error_log()
    finally:
        server.stop()


def test_debug_lines_with_module_log_level(scratch, out):
    server = Httpd("idioms-debug", scratch)
    server.write_config("LogLevel warn hrflow:debug\n"
                        + record_endpoint(scratch, out))
    server.start()
    try:
        r, _ = server.request("POST", "/rec", EVENT, JSON)
        assert r.status == 200
        log = server.error_log(wait_for="HF00319")
        assert re.search(r"\[hrflow:debug\] .* HF00318: event \w+ "
                         r"type=profile.parsing.success routed by wildcard "
                         rf"pattern 'profile.\*' to {scratch}/handlers/"
                         "record.sh", log), log
        assert re.search(r"HF00319: event \w{12}: handler \S+record.sh ran "
                         r"as pid \d+", log), log
        assert "HF00315: event " in log        # the result line, numbered
    finally:
        server.stop()


def test_no_debug_lines_at_info(scratch, out):
    server = Httpd("idioms-no-debug", scratch)
    server.write_config(record_endpoint(scratch, out))
    server.start()
    try:
        r, _ = server.request("POST", "/rec", EVENT, JSON)
        assert r.status == 200
        log = server.error_log(wait_for="HF00315: event ")
        assert "HF00315: event " in log
        assert "HF00318" not in log and "HF00319" not in log
    finally:
        server.stop()


def test_debug_line_for_a_committed_spool_file(scratch, out):
    server = Httpd("idioms-debug-spool", scratch)
    spool = os.path.join(server.root, "spool")
    server.write_config("LogLevel warn hrflow:debug\n"
                        f"HrflowSpool {spool}\n" + record_endpoint(scratch, out))
    server.start()
    try:
        r, _ = server.request("POST", "/rec", EVENT, JSON)
        assert r.status == 202
        log = server.error_log(wait_for="HF00505")
        assert re.search(rf"HF00505: event \w+ committed as {spool}/new/"
                         r"\S+\.json \(a group of 1\)", log), log
    finally:
        server.stop()


def test_cgi_lines_are_numbered_too(scratch):
    conf = os.path.join(scratch, "cgi-off.conf")
    with open(conf, "w") as f:
        f.write("HrflowSignature off\nHrflowHandler * /bin/true\n")
    os.chmod(conf, 0o600)
    r = subprocess.run([CGI, "--check", conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"HF00602: {conf}: HrflowSignature off" in r.stderr, r.stderr


def test_log_numbers_are_unique_and_documented():
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    used = []
    for folder in ("mod_hrflow", "cgi"):
        for name in sorted(os.listdir(os.path.join(top, folder))):
            if name.endswith(".c"):
                text = open(os.path.join(top, folder, name)).read()
                used += re.findall(r"HFLOGNO\((\d{5})\)", text)
    assert used and len(used) == len(set(used)), sorted(used)
    readme = open(os.path.join(top, "README.md")).read()
    documented = set()
    for a, b in re.findall(r"HF(\d{5})(?:–HF(\d{5}))?", readme):
        documented.update(f"{n:05d}" for n in range(int(a), int(b or a) + 1))
    assert set(used) <= documented, sorted(set(used) - documented)
