"""The release files: the version is configure.ac's wherever it is shown
(NEWS's newest entry, --version of both programs), LICENSE is the Apache
License 2.0, SECURITY.md says where to report a vulnerability."""
import os
import re
import subprocess

from conftest import BUILD, HERE

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))


def read(name):
    return open(os.path.join(TOP, name)).read()


def version():
    return re.search(r"AC_INIT\(\[mod_hrflow\], \[([^]]+)\]",
                     read("configure.ac")).group(1)


def test_news_starts_with_this_version():
    releases = re.findall(r"^mod_hrflow (\S+) \(", read("NEWS"), re.M)
    assert releases[0] == version()
    assert "0.1.0" in releases


def test_programs_print_this_version():
    for prog, name in (("tools/hrflowctl", "hrflowctl"),
                       ("cgi/hrflow.cgi", "hrflow.cgi")):
        r = subprocess.run([os.path.join(BUILD, prog), "--version"],
                           capture_output=True, text=True, timeout=30,
                           env={"PATH": os.environ.get("PATH", "")})
        assert r.returncode == 0
        assert r.stdout == f"{name} (mod_hrflow) {version()}\n"


def test_license_is_apache_2():
    text = read("LICENSE")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_security_policy_says_where_to_report():
    text = read("SECURITY.md")
    assert re.search(r"security@\S+", text)
    assert "Include" in text and "promise" in text
