"""The man pages render without a groff warning, carry configure.ac's
version, and `make install` puts them in man8."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, HERE

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
PAGES = ["hrflowctl.8", "hrflow.cgi.8", "hrflow-worker.8"]

pytestmark = pytest.mark.skipif(not shutil.which("man"),
                                reason="needs man-db")


def render(path):
    """What man-db's lint says about a page: groff's warnings on stderr."""
    env = dict(os.environ, MANROFFSEQ="", LC_ALL="C.UTF-8", MANWIDTH="80")
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8",
                        "-Z", path], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stderr


def version():
    text = open(os.path.join(TOP, "configure.ac")).read()
    return re.search(r"AC_INIT\(\[mod_hrflow\], \[([^]]+)\]", text).group(1)


@pytest.mark.parametrize("page", PAGES)
def test_man_page_renders_without_warnings(page):
    path = os.path.join(BUILD, "man", page)
    assert os.path.isfile(path), "make builds the man pages"
    assert render(path) == ""


@pytest.mark.parametrize("page", PAGES)
def test_man_page_shows_the_version(page):
    text = open(os.path.join(BUILD, "man", page)).read()
    th = text.splitlines()[0]
    assert f'"mod_hrflow {version()}"' in th
    assert "@" not in text, "every @VAR@ substituted"


def test_the_lint_sees_a_broken_page(tmp_path):
    """The check above can fail: an unknown macro is reported."""
    bad = tmp_path / "bad.8"
    bad.write_text('.TH BAD 8\n.SH NAME\nbad \\- a page\n.BOGUS x\n')
    assert "BOGUS" in render(str(bad))
