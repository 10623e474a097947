"""Apache idioms: httpd's own argument handling and contexts, a server
config for durable mode, paths under ServerRoot, httpd's time syntax,
numbered log lines, and handlers checked as the server's User."""
import os
import re

import pytest

from conftest import Httpd, run_user


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
