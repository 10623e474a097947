"""mod_hrflow.so is built with the flags httpd was built with (apxs -q
CFLAGS, CPPFLAGS, LDFLAGS): on Debian its hardening, seen in the binary as
calls to the stack protector and to _FORTIFY_SOURCE's checked functions,
and as an immediately bound (BIND_NOW) object."""
import os
import shutil
import subprocess

import pytest

from conftest import MODULE

pytestmark = pytest.mark.skipif(
    not (os.path.exists(MODULE) and shutil.which("apxs")),
    reason="a module build and apxs")


def apxs(var):
    return subprocess.run(["apxs", "-q", var], capture_output=True,
                          text=True, check=True).stdout.split()


def undefined_symbols():
    out = subprocess.run(["nm", "-D", "--undefined-only", MODULE],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines()}


def test_stack_protector_from_apxs_cflags():
    if "-fstack-protector-strong" not in apxs("CFLAGS"):
        pytest.skip("this httpd is not built with -fstack-protector-strong")
    assert "__stack_chk_fail" in undefined_symbols()


def test_fortify_source_from_apxs_cppflags():
    if not any(f.startswith("-D_FORTIFY_SOURCE") for f in apxs("CPPFLAGS")):
        pytest.skip("this httpd is not built with _FORTIFY_SOURCE")
    checked = [s for s in undefined_symbols()
               if s.startswith("__") and s.endswith("_chk")
               and s != "__stack_chk_fail"]
    assert checked, "no _FORTIFY_SOURCE checked call in the module"


def test_bind_now_from_apxs_ldflags():
    if "-Wl,-z,now" not in apxs("LDFLAGS"):
        pytest.skip("this httpd is not linked with -z now")
    out = subprocess.run(["readelf", "-d", MODULE], capture_output=True,
                         text=True, check=True).stdout
    assert "BIND_NOW" in out
