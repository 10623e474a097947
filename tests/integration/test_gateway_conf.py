"""Gateway mode's configuration (SPEC section 9): what `apachectl -t`
refuses, and what it lets through, and the CGI's refusal of HrflowVerify."""
import pytest

from conftest import MODULES_DIR, SECRETS, Httpd
from test_cgi import cgi_dir, tool, write_conf  # noqa: F401 (fixture)

PROXY = ("LoadModule proxy_module {m}/mod_proxy.so\n"
         "LoadModule proxy_http_module {m}/mod_proxy_http.so\n"
         ).format(m=MODULES_DIR)
BACKEND = "ProxyPass http://127.0.0.1:9/app/"


def configtest(scratch, name, section, path="/app/"):
    server = Httpd("gateway-conf-" + name, scratch)
    server.write_config(PROXY + f"<Location {path}>\n" + "".join(
        f"    {line}\n" for line in section) + "</Location>\n")
    r = server.apachectl("-t")
    return r, r.stdout + r.stderr + server.error_log()


def test_verify_in_front_of_a_proxy_is_fine(scratch):
    """The control for the refusals below: the same section, valid."""
    r, text = configtest(scratch, "ok", ["HrflowVerify on",
                                         f"HrflowSecret {SECRETS[0]}",
                                         BACKEND])
    assert r.returncode == 0, text
    assert "Syntax OK" in text


def test_verify_with_optional_signature_needs_no_secret(scratch):
    r, text = configtest(scratch, "optional", ["HrflowVerify on",
                                               "HrflowSignature optional",
                                               BACKEND])
    assert r.returncode == 0, text


def test_verify_off_beside_an_endpoint_is_fine(scratch):
    r, text = configtest(scratch, "off", [
        "SetHandler hrflow-webhook", "HrflowVerify off",
        f"HrflowSecret {SECRETS[0]}", "HrflowHandler * /bin/true"])
    assert r.returncode == 0, text


@pytest.mark.parametrize("name,lines", [
    ("sethandler", ["SetHandler hrflow-webhook"]),
    ("handler", ["HrflowHandler * /bin/true", BACKEND]),
    ("both", ["SetHandler hrflow-webhook", "HrflowHandler * /bin/true"]),
])
def test_verify_with_an_endpoint_in_the_same_section_fails(scratch, name,
                                                           lines):
    r, text = configtest(scratch, "endpoint-" + name,
                         ["HrflowVerify on", f"HrflowSecret {SECRETS[0]}"]
                         + lines)
    assert r.returncode != 0, text
    assert "HF01001" in text and "HrflowVerify" in text, text
    assert "Syntax OK" not in text


def test_verify_with_an_endpoint_in_a_directory_fails(scratch):
    server = Httpd("gateway-conf-directory", scratch)
    server.write_config(
        f"<Directory {scratch}/htdocs>\n    HrflowVerify on\n"
        f"    HrflowSecret {SECRETS[0]}\n    SetHandler hrflow-webhook\n"
        "</Directory>\n")
    r = server.apachectl("-t")
    text = r.stdout + r.stderr + server.error_log()
    assert r.returncode != 0, text
    assert "HF01001" in text and "HrflowVerify" in text, text


def test_verify_without_a_secret_fails(scratch):
    """The signature is required by default: no secret, no way to check."""
    r, text = configtest(scratch, "nosecret", ["HrflowVerify on", BACKEND])
    assert r.returncode != 0, text
    assert "HF01007" in text and "HrflowSecret" in text, text
    assert "HrflowVerify on for /app/" in text


def test_verify_without_a_secret_when_required_explicitly_fails(scratch):
    r, text = configtest(scratch, "nosecret-required", [
        "HrflowVerify on", "HrflowSignature required", BACKEND])
    assert r.returncode != 0, text
    assert "HF01007" in text


@pytest.mark.parametrize("value", ["yes", "1", ""])
def test_verify_takes_on_or_off(scratch, value):
    r, text = configtest(scratch, "value-" + (value or "none"), [
        f"HrflowVerify {value}", f"HrflowSecret {SECRETS[0]}", BACKEND])
    assert r.returncode != 0, text
    assert "HrflowVerify" in text


def test_cgi_refuses_verify(cgi_dir):  # noqa: F811
    """hrflow.cgi is an endpoint: HrflowVerify has no meaning there."""
    conf = write_conf(cgi_dir, f"HrflowSecret {SECRETS[0]}\nHrflowVerify on\n")
    r = tool("--check", conf)
    assert r.returncode == 1, r.stderr
    assert "HrflowVerify" in r.stderr.decode()
