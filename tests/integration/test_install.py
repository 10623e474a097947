"""`make install DESTDIR=...` stages everything under DESTDIR (the module,
hrflow.load and hrflow.conf in mods-available included) and writes nothing
outside it; `make uninstall DESTDIR=...` then takes every file away again.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD

# Live folders a careless install writes into (apxs -i did).
LIVE = ["/etc/apache2", "/usr/lib/apache2/modules", "/usr/local"]


def make_vars():
    """The install folders configure chose, from the build's Makefile."""
    values = {}
    with open(os.path.join(BUILD, "Makefile")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z_]+) = (.*)$", line.rstrip("\n"))
            if m:
                values[m.group(1)] = m.group(2).strip()
    return values


def make(*args):
    r = subprocess.run(["make", "-C", BUILD, *args], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"make {args}: {r.stdout}{r.stderr}"
    return r.stdout


def files_under(top):
    found = []
    for root, _dirs, names in os.walk(top):
        found += [os.path.relpath(os.path.join(root, n), top) for n in names]
    return sorted(found)


def touched_outside(stamp):
    """Files with hrflow in their name changed after stamp, outside DESTDIR."""
    changed = []
    for top in LIVE:
        for root, _dirs, names in os.walk(top):
            for name in names:
                path = os.path.join(root, name)
                if "hrflow" in name and os.lstat(path).st_mtime > stamp:
                    changed.append(path)
    return changed


@pytest.fixture
def destdir():
    top = tempfile.mkdtemp(prefix="hrflow-destdir-")
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "mod_hrflow.so")),
                    reason="a build with the module")
def test_install_stages_everything_and_uninstall_removes_it(destdir):
    v = make_vars()
    make("all")
    stamp = time.time()
    time.sleep(0.01)
    make("install", f"DESTDIR={destdir}")

    def staged(path):
        return os.path.join(destdir, path.lstrip("/"))

    mods = os.path.join(v["APACHE_CONFDIR"], "mods-available")
    expected = [
        os.path.join(v["HTTPD_LIBEXECDIR"], "mod_hrflow.so"),
        os.path.join(mods, "hrflow.load"),
        os.path.join(mods, "hrflow.conf"),
        os.path.join(v["prefix"], "sbin", "hrflowctl"),
        os.path.join(v["prefix"], "libexec", "mod_hrflow", "hrflow.cgi"),
        os.path.join(v["prefix"], "share", "man", "man8", "hrflowctl.8"),
        os.path.join(v["prefix"], "share", "man", "man8", "hrflow.cgi.8"),
    ]
    for path in expected:
        assert os.path.isfile(staged(path)), (path, files_under(destdir))
    # The staged .load names the module where it was installed, not DESTDIR.
    load = open(staged(os.path.join(mods, "hrflow.load"))).read()
    assert f"{v['HTTPD_LIBEXECDIR']}/mod_hrflow.so" in load
    assert destdir not in load
    assert os.stat(staged(expected[0])).st_mode & 0o777 == 0o644
    # The example virtual host names only programs the install put down.
    example = os.path.join(v["prefix"], "share", "mod_hrflow",
                           "hrflow-example.conf")
    text = open(staged(example)).read()
    programs = re.findall(r"^\s*HrflowHandler\s+\S+\s+(\S+)", text, re.M)
    assert programs
    for program in programs:
        assert os.access(staged(program), os.X_OK), program
    # Everything lies under the prefix or the two Apache folders.
    roots = [v["prefix"], v["HTTPD_LIBEXECDIR"], mods]
    for path in files_under(destdir):
        assert any(("/" + path).startswith(r.rstrip("/") + "/")
                   for r in roots), path
    assert touched_outside(stamp) == []

    make("uninstall", f"DESTDIR={destdir}")
    assert files_under(destdir) == []
    # Only folders automake leaves (shared ones) may stay, empty.
    left = [os.path.relpath(root, destdir)
            for root, _dirs, _names in os.walk(destdir)]
    assert not [d for d in left if "hrflow" in d], left
    assert touched_outside(stamp) == []


@pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "mod_hrflow.so")),
                    reason="a build with the module")
def test_changed_hrflow_conf_is_kept(destdir):
    """An hrflow.conf the administrator edited survives install and
    uninstall; the shipped one lands beside it and goes again."""
    v = make_vars()
    mods = os.path.join(destdir, v["APACHE_CONFDIR"].lstrip("/"),
                        "mods-available")
    os.makedirs(mods)
    mine = os.path.join(mods, "hrflow.conf")
    with open(mine, "w") as f:
        f.write("# the administrator's\n")
    make("install", f"DESTDIR={destdir}")
    assert open(mine).read() == "# the administrator's\n"
    assert os.path.isfile(mine + ".dist")
    make("uninstall", f"DESTDIR={destdir}")
    assert files_under(destdir) == [os.path.relpath(mine, destdir)]


@pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "mod_hrflow.so")),
                    reason="a build with the module")
def test_uninstall_keeps_an_enabled_module(destdir):
    """With mods-enabled/hrflow.load still there (a2dismod not run),
    removing the module would leave Apache unable to start: the module and
    its .load stay, and make says why and how to remove them after."""
    v = make_vars()
    make("install", f"DESTDIR={destdir}")
    conf = os.path.join(destdir, v["APACHE_CONFDIR"].lstrip("/"))
    enabled = os.path.join(conf, "mods-enabled")
    os.makedirs(enabled)
    link = os.path.join(enabled, "hrflow.load")
    os.symlink("../mods-available/hrflow.load", link)
    so = os.path.join(destdir, v["HTTPD_LIBEXECDIR"].lstrip("/"),
                      "mod_hrflow.so")
    out = make("uninstall", f"DESTDIR={destdir}")
    assert os.path.isfile(so)
    assert os.path.exists(link), "mods-enabled/hrflow.load points nowhere"
    assert "a2dismod hrflow" in out, out
    load = os.path.join(conf, "mods-available", "hrflow.load")
    assert f"rm {so} {load}" in out, out
    assert sorted(files_under(destdir)) == sorted(
        os.path.relpath(p, destdir) for p in (so, load, link))
