"""make dist-cgi: the tarball a shared-hosting customer uploads.  Unpacked
anywhere, its program needs only the C library, and --check and --sign
work there before the handlers (or anything else) are uploaded."""
import os
import subprocess
import tarfile

import pytest

from conftest import BUILD
from hrflow_sign import signed_value

EVENT = b'{"type":"profile.parsing.success","profile":{"key":"k-dist"}}'
SECRET = "dist-secret-Kx3"
FILES = {"hrflow.cgi", "hrflow.conf", "htaccess", "README", "handlers",
         "handlers/log-event.sh", "handlers/show-env.sh"}
LIBC = ("linux-vdso", "/ld-linux", "libc.so", "libm.so", "libdl.so",
        "libpthread.so", "librt.so")


@pytest.fixture(scope="module")
def tarball():
    if not os.path.exists(os.path.join(BUILD, "Makefile")):
        pytest.skip(f"no configured build in {BUILD}")
    r = subprocess.run(["make", "-C", BUILD, "dist-cgi"], capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    names = [x for x in os.listdir(BUILD)
             if x.startswith("hrflow-cgi-") and x.endswith(".tar.gz")]
    assert len(names) == 1, names
    return os.path.join(BUILD, names[0])


@pytest.fixture
def unpacked(tarball, tmp_path):
    with tarfile.open(tarball) as t:
        top = {m.name.split("/", 1)[0] for m in t.getmembers()}
        assert top == {os.path.basename(tarball)[:-len(".tar.gz")]}
    # As the customer unpacks it.
    subprocess.run(["tar", "xzf", tarball, "-C", str(tmp_path)], check=True)
    d = os.path.join(tmp_path, top.pop())
    os.chmod(d, 0o755)
    return d


def tool(d, *args, stdin=b""):
    return subprocess.run([os.path.join(d, "hrflow.cgi"), *args], cwd=d,
                          input=stdin, capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})


def add_secret(d):
    path = os.path.join(d, "hrflow.secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, SECRET.encode() + b"\n")
    os.close(fd)


def test_tarball_holds_what_the_customer_uploads(tarball, unpacked):
    found = set()
    for root, dirs, files in os.walk(unpacked):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), unpacked))
    assert found == FILES
    for name in ("hrflow.cgi", "handlers/log-event.sh",
                 "handlers/show-env.sh"):
        assert os.stat(os.path.join(unpacked, name)).st_mode & 0o777 == 0o755
    for name in ("hrflow.conf", "htaccess", "README"):
        assert os.stat(os.path.join(unpacked, name)).st_mode & 0o777 == 0o644
    ldd = subprocess.run(["ldd", os.path.join(unpacked, "hrflow.cgi")],
                         capture_output=True, text=True).stdout
    extra = [x for x in ldd.splitlines() if x.strip()
             and not any(lib in x for lib in LIBC)]
    assert extra == [], ldd
    assert "Options" not in "".join(
        x for x in open(os.path.join(unpacked, "htaccess"))
        if not x.startswith("#"))


def test_check_and_sign_in_the_unpacked_folder(unpacked):
    r = tool(unpacked, "--check", "hrflow.conf")
    assert r.returncode == 1
    assert b"hrflow.secret" in r.stderr        # not there yet: said so

    add_secret(unpacked)
    r = tool(unpacked, "--check", "hrflow.conf")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hrflow.conf: Syntax OK\n"

    r = tool(unpacked, "--sign", stdin=EVENT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == signed_value(SECRET, EVENT)


def test_check_and_sign_without_the_handlers(unpacked):
    add_secret(unpacked)
    for name in os.listdir(os.path.join(unpacked, "handlers")):
        os.unlink(os.path.join(unpacked, "handlers", name))
    os.rmdir(os.path.join(unpacked, "handlers"))

    r = tool(unpacked, "--check", "hrflow.conf")
    assert r.returncode == 1
    assert b"handlers/show-env.sh: No such file or directory" in r.stderr

    r = tool(unpacked, "--check", "--allow-missing-handlers", "hrflow.conf")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hrflow.conf: Syntax OK\n"
    err = r.stderr.decode()
    assert "[warn] HrflowHandler: " in err
    assert "handlers/show-env.sh is not there (yet)" in err
    assert "handlers/log-event.sh is not there (yet)" in err

    r = tool(unpacked, "--sign", stdin=EVENT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == signed_value(SECRET, EVENT)
