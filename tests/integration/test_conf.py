"""The shipped configuration: conf/hrflow.conf (mods-available) documents
every directive, and its commented examples, uncommented, are a valid
configuration; the example virtual host names the secret file the README
uses and only files `make install` puts down."""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import (BUILD, HERE, HTTPD, MODULE, base_config, free_port,
                      httpd_env)

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))


def read(*path):
    return open(os.path.join(TOP, *path)).read()


def directives():
    names = re.findall(r'X\("(Hrflow\w+)"', read("mod_hrflow", "hrflow.h"))
    assert len(names) >= 12
    return names


def test_hrflow_conf_documents_every_directive():
    text = read("conf", "hrflow.conf")
    for name in directives():
        assert re.search(rf"^\s*# {name}\b", text, re.M), f"{name}: no text"
        assert re.search(rf"^\s*#{name} \S", text, re.M), f"{name}: no example"
    assert "# SetHandler hrflow-webhook" in text


@pytest.fixture
def folder():
    d = tempfile.mkdtemp(prefix="hrflow-conf-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not os.path.exists(MODULE), reason="a module build")
def test_hrflow_conf_examples_uncommented_pass_configtest(folder):
    """Every `#Directive value` line of hrflow.conf made live, its paths
    pointed into a scratch folder: `httpd -t` accepts them all."""
    secret = os.path.join(folder, "hrflow.secret")
    with open(secret, "w") as f:
        f.write("a-secret-for-the-config-test\n")
    os.chmod(secret, 0o600)
    # A copy Apache's user can reach, wherever the checkout is.
    handler = os.path.join(folder, "show-env.sh")
    shutil.copy(os.path.join(TOP, "conf", "handlers", "show-env.sh"), handler)
    os.chmod(handler, 0o755)
    spool = os.path.join(folder, "spool")
    text = read("conf", "hrflow.conf")
    text, n = re.subn(r"^(\s*)#((?:Hrflow\w+|LogLevel) .*)$", r"\1\2", text,
                      flags=re.M)
    assert n >= len(directives())
    text = text.replace("/etc/apache2/hrflow.secret", secret)
    text = text.replace("/usr/local/bin/sync-profile", handler)
    text = text.replace("/usr/share/mod_hrflow/handlers/show-env.sh", handler)
    text = text.replace("/var/spool/hrflow", spool)
    password = os.path.join(folder, "queue.password")
    with open(password, "w") as f:
        f.write("a-password\n")
    os.chmod(password, 0o600)
    text = text.replace("/etc/apache2/hrflow-queue.password", password)
    assert not re.search(r"^\s*Hrflow\w+ .*(/etc/|/usr/|/var/)", text, re.M)
    os.makedirs(os.path.join(folder, "run"))
    os.makedirs(os.path.join(folder, "htdocs"))
    conf = os.path.join(folder, "httpd.conf")
    with open(conf, "w") as f:
        f.write(base_config(folder, free_port(), folder) + text
                + "<Location /hrflow>\n    SetHandler hrflow-webhook\n"
                  f"    HrflowHandler job.* {handler}\n</Location>\n")
    r = subprocess.run([HTTPD, "-t", "-f", conf], capture_output=True,
                       text=True, env=httpd_env(), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Syntax OK" in r.stderr


def test_example_vhost_uses_the_readme_secret_file():
    readme = read("README.md")
    example = read("conf", "hrflow-example.conf.in")
    files = set(re.findall(r"HrflowSecretFile (\S+)", example))
    assert files == {"/etc/apache2/hrflow.secret"}
    assert "HrflowSecretFile /etc/apache2/hrflow.secret" in readme
    # Apache's own log folder, which exists, for the vhost's logs.
    for log in re.findall(r"^\s*(?:ErrorLog|CustomLog) (\S+)", example, re.M):
        assert log.startswith("${APACHE_LOG_DIR}/"), log
