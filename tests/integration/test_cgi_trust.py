"""hrflow.cgi refuses what suexec would refuse: a config, secret file or
handler program that another user could replace, directly or through its
folder, and a config that is not a regular file (a FIFO must not hang it).
Each refusal names the file and the rule it breaks."""
import os
import subprocess

import pytest

from conftest import CGI
from test_cgi import run_cgi, tool

EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-1"}}'
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0,
                             reason="needs root to give files away")


def folder(tmp_path, name, mode=0o755):
    d = tmp_path / name
    d.mkdir()
    d.chmod(mode)
    return d


def write(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def refused(conf, message):
    """A request answered 500 with the rule in the log, and --check too."""
    fields, body, err, rc = run_cgi(conf, body=EVENT,
                                    ctype="application/json")
    assert fields["Status"] == "500 Internal Server Error", err
    assert b"server_misconfigured" in body
    assert message in err, err
    check = tool("--check", conf)
    assert check.returncode == 1
    assert message in check.stderr.decode()


OK_CONF = "HrflowSignature optional\nHrflowHandler * /bin/true\n"


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777],
                         ids=["0777", "0775", "1777-sticky"])
def test_config_in_a_folder_others_can_write(tmp_path, mode):
    d = folder(tmp_path, "site", mode)
    conf = write(d / "hrflow.conf", OK_CONF)
    who = "others" if mode & 0o002 else "its group"
    refused(conf, f"config {conf}: its folder {d} is writable by {who} "
                  f"(mode {mode:04o}): only its owner may write to it")


@as_root
def test_config_owned_by_another_user(tmp_path):
    conf = write(tmp_path / "hrflow.conf", OK_CONF)
    os.chown(conf, NOBODY, NOBODY)
    refused(conf, f"config {conf}: it is owned by uid {NOBODY}, not by the "
                  "user running hrflow.cgi (uid 0) or root")


@as_root
def test_config_in_a_folder_of_another_user(tmp_path):
    d = folder(tmp_path, "theirs")
    conf = write(d / "hrflow.conf", OK_CONF)
    os.chown(d, NOBODY, NOBODY)
    refused(conf, f"config {conf}: its folder {d} is owned by uid {NOBODY}")


def test_config_group_writable(tmp_path):
    conf = write(tmp_path / "hrflow.conf", OK_CONF, 0o620)
    refused(conf, f"config {conf}: it is writable by its group (mode 0620): "
                  "only its owner may write to it; chmod g-w it")


def test_config_that_is_a_symbolic_link(tmp_path):
    real = write(tmp_path / "real.conf", OK_CONF)
    link = tmp_path / "hrflow.conf"
    link.symlink_to(real)
    refused(str(link), f"config {link}: it is a symbolic link")


def test_fifo_config_fails_promptly(tmp_path):
    fifo = tmp_path / "hrflow.conf"
    os.mkfifo(fifo, 0o600)
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST",
           "CONTENT_TYPE": "application/json", "HRFLOW_CONFIG": str(fifo),
           "CONTENT_LENGTH": str(len(EVENT)), "PATH": "/usr/bin:/bin"}
    # The timeout only guards the test run: a CGI that waits for a writer
    # would hang here for ever.
    r = subprocess.run([CGI], input=EVENT, env=env, capture_output=True,
                       timeout=20)
    assert r.stdout.startswith(b"Status: 500 Internal Server Error\r\n")
    assert (f"config {fifo}: it is not a regular file"
            in r.stderr.decode()), r.stderr
    r = subprocess.run([CGI, "--check", str(fifo)], capture_output=True,
                       timeout=20)
    assert r.returncode == 1
    assert b"it is not a regular file" in r.stderr


def test_secret_file_in_a_folder_others_can_write(tmp_path):
    d = folder(tmp_path, "drop", 0o1777)
    secret = write(d / "hrflow.secret", "s3cret\n")
    conf = write(tmp_path / "hrflow.conf", f"HrflowSecretFile {secret}\n")
    refused(conf, f"HrflowSecretFile: {secret}: its folder {d} is writable "
                  "by others (mode 1777)")


def test_secret_file_that_is_a_fifo(tmp_path):
    fifo = tmp_path / "hrflow.secret"
    os.mkfifo(fifo, 0o600)
    conf = write(tmp_path / "hrflow.conf", f"HrflowSecretFile {fifo}\n")
    r = subprocess.run([CGI, "--check", conf], capture_output=True,
                       timeout=20)
    assert r.returncode == 1
    assert f"{fifo}: it is not a regular file" in r.stderr.decode()


@as_root
def test_secret_file_owned_by_another_user(tmp_path):
    secret = write(tmp_path / "hrflow.secret", "s3cret\n")
    os.chown(secret, NOBODY, NOBODY)
    conf = write(tmp_path / "hrflow.conf", f"HrflowSecretFile {secret}\n")
    refused(conf, f"HrflowSecretFile: {secret}: it is owned by uid {NOBODY}")


def handler(d, name="h.sh", mode=0o755):
    return write(d / name, "#!/bin/sh\nexit 0\n", mode)


def test_handler_in_a_folder_others_can_write(tmp_path):
    d = folder(tmp_path, "bin", 0o777)
    h = handler(d)
    conf = write(tmp_path / "hrflow.conf",
                 f"HrflowSignature optional\nHrflowHandler * {h}\n")
    refused(conf, f"HrflowHandler: {h}: its folder {d} is writable by "
                  "others (mode 0777)")


def test_handler_writable_by_its_group(tmp_path):
    h = handler(tmp_path, mode=0o775)
    conf = write(tmp_path / "hrflow.conf",
                 f"HrflowSignature optional\nHrflowHandler * {h}\n")
    refused(conf, f"HrflowHandler: {h}: it is writable by its group "
                  "(mode 0775)")


def test_handler_linked_into_a_folder_others_can_write(tmp_path):
    d = folder(tmp_path, "drop", 0o1777)
    real = handler(d)
    link = tmp_path / "h.sh"
    link.symlink_to(real)
    conf = write(tmp_path / "hrflow.conf",
                 f"HrflowSignature optional\nHrflowHandler * {link}\n")
    refused(conf, f"HrflowHandler: {link}: it is {real}, and its folder {d} "
                  "is writable by others (mode 1777)")


def test_trusted_files_are_accepted(tmp_path):
    d = folder(tmp_path, "site")
    h = handler(folder(tmp_path, "bin"))
    secret = write(d / "hrflow.secret", "s3cret\n", 0o640)
    conf = write(d / "hrflow.conf", f"HrflowSecretFile {secret}\n"
                 f"HrflowHandler * {h}\nHrflowHandler job.* /bin/true\n",
                 0o644)
    r = tool("--check", conf)
    assert r.returncode == 0, r.stderr
