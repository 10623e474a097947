"""Every startup error of SPEC section 3 fails `apache2 -t` clearly."""
import os

import pytest

from conftest import Httpd

BAD = {
    "missing_program": ("HrflowSecret s\nHrflowHandler * {scratch}/handlers/nope.sh",
                        "HrflowHandler: cannot run {scratch}/handlers/nope.sh: "
                        "No such file or directory"),
    "not_executable": ("HrflowSecret s\nHrflowHandler * {scratch}/htdocs/static.txt",
                       "HrflowHandler: cannot run {scratch}/htdocs/static.txt: "
                       "not executable"),
    "directory_program": ("HrflowSecret s\nHrflowHandler * {scratch}/handlers",
                          "not a regular file"),
    "unreadable_secret_file": ("HrflowSecretFile {scratch}/no-such-secrets",
                               "HrflowSecretFile: cannot read "
                               "{scratch}/no-such-secrets"),
    "empty_secret_file": ("HrflowSecretFile {scratch}/htdocs/empty",
                          "HrflowSecretFile: no secret in"),
    "bad_pattern": ("HrflowSecret s\nHrflowHandler Job.[ {scratch}/handlers/fail.sh",
                    "HrflowHandler: bad pattern 'Job.['"),
    "bad_timeout": ("HrflowSecret s\nHrflowTimeout soon",
                    "HrflowTimeout: 'soon' is not a time from 1ms to 86400s"),
    "zero_timeout": ("HrflowSecret s\nHrflowTimeout 0", "HrflowTimeout: '0'"),
    "bad_max_body": ("HrflowSecret s\nHrflowMaxBody 1M",
                     "HrflowMaxBody: '1M' is not a whole number"),
    "bad_max_events": ("HrflowSecret s\nHrflowMaxEvents -5",
                       "HrflowMaxEvents: '-5' is not a whole number"),
    "bad_signature_mode": ("HrflowSecret s\nHrflowSignature sometimes",
                           "HrflowSignature: 'sometimes' is not one of"),
    "no_secret_while_required": (
        "HrflowHandler * {scratch}/handlers/fail.sh",
        "HrflowSecret: no HrflowSecret or HrflowSecretFile while "
        "HrflowSignature is required (endpoint /hook"),
    "missing_arguments": ("HrflowSecret s\nHrflowHandler job.*",
                          "HrflowHandler: takes at least 2 arguments"),
}


def configtest(scratch, name, location_body):
    server = Httpd("startup-" + name, scratch)
    body = location_body.format(scratch=scratch)
    server.write_config(
        f"<Location /hook>\nSetHandler hrflow-webhook\n{body}\n</Location>\n")
    return server.apachectl("-t")


@pytest.fixture(scope="module")
def empty_file(scratch):
    open(os.path.join(scratch, "htdocs", "empty"), "w").close()


@pytest.mark.parametrize("name", sorted(BAD))
def test_configtest_fails_with_clear_message(scratch, empty_file, name):
    body, message = BAD[name]
    r = configtest(scratch, name, body)
    assert r.returncode != 0
    assert message.format(scratch=scratch) in r.stderr, r.stderr


def test_valid_config_passes(scratch):
    r = configtest(scratch, "valid",
                   "HrflowSecret s\nHrflowHandler * {scratch}/handlers/fail.sh")
    assert r.returncode == 0, r.stderr
    assert "Syntax OK" in r.stderr


def test_secret_inherited_from_server_satisfies_endpoint(scratch):
    server = Httpd("startup-inherited", scratch)
    server.write_config(
        "HrflowSecret s\n<Location /hook>\nSetHandler hrflow-webhook\n"
        f"HrflowHandler * {scratch}/handlers/fail.sh\n</Location>\n")
    r = server.apachectl("-t")
    assert r.returncode == 0, r.stderr


def test_signature_off_warns(scratch):
    r = configtest(scratch, "off", "HrflowSignature off")
    assert r.returncode == 0, r.stderr
    assert "HrflowSignature off for endpoint /hook" in r.stderr


def test_server_wide_directive_refused_in_location(scratch):
    r = configtest(scratch, "spool-in-location", "HrflowSecret s\nHrflowRetry 3")
    assert r.returncode != 0
    # httpd's own refusal of an RSRC_CONF directive.
    assert "HrflowRetry not allowed in <Location> context" in r.stderr, \
        r.stderr


def test_bare_endpoint_takes_the_server_settings(scratch):
    # A <Location> with no Hrflow directive of its own: everything comes
    # from the server.  configtest used to crash on it.
    server = Httpd("startup-bare", scratch)
    server.write_config(
        f"HrflowSecret s\nHrflowHandler * {scratch}/handlers/fail.sh\n"
        "<Location /hook>\nSetHandler hrflow-webhook\n</Location>\n")
    r = server.apachectl("-t")
    assert r.returncode == 0, r.stderr
    assert "Syntax OK" in r.stderr


def test_bare_endpoint_without_a_secret_fails_clearly(scratch):
    server = Httpd("startup-bare-nosecret", scratch)
    server.write_config(
        "<Location /hook>\nSetHandler hrflow-webhook\n</Location>\n")
    r = server.apachectl("-t")
    assert r.returncode != 0
    assert "no HrflowSecret or HrflowSecretFile" in r.stderr, r.stderr
