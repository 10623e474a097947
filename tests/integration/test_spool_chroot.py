"""Durable mode under ChrootDir: no /proc in the jail, so event files cannot
be created unnamed and named through /proc/self/fd.  They go through tmp/,
and every event answered 202 is in the spool and runs."""
import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import Httpd, lines, make_dir, spool_empty, wait_until

JSON = {"Content-Type": "application/json"}
HANDLER = """#!/bin/sh
echo "$HRFLOW_DELIVERY_ID $HRFLOW_ATTEMPT" >> "$1"
"""


def copy_into(jail, path):
    """path (and what the loader needs for it) at the same place in jail."""
    target = jail + path
    make_dir(os.path.dirname(target))
    shutil.copy2(path, target)


def libraries(program):
    out = subprocess.run(["ldd", program], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"(/\S+) \(0x", out)


@pytest.fixture
def jailed(scratch):
    """A server chrooted to JAIL whose spool, handler and output have the
    same paths inside and outside: SCRATCH/jail is, outside, a link to
    JAIL/SCRATCH/jail."""
    if os.geteuid() != 0:
        pytest.fail("ChrootDir needs root")
    jail = make_dir(os.path.join(scratch, "chroot"))
    inside = os.path.join(scratch, "jail")
    real = jail + inside
    for folder in (os.path.dirname(real), real):
        make_dir(folder)
    os.symlink(real, inside)
    out = make_dir(os.path.join(real, "out"), 0o777)
    # glibc loads libgcc_s when a thread exits: httpd's children need it.
    gcc_s = glob.glob("/lib/*/libgcc_s.so.1") + glob.glob("/usr/lib/*/libgcc_s.so.1")
    for path in ["/bin/sh"] + libraries("/bin/sh") + gcc_s[:1]:
        copy_into(jail, os.path.realpath(path))
        if os.path.realpath(path) != path:
            copy_into(jail, path)
    handler = os.path.join(real, "handler.sh")
    with open(handler, "w") as f:
        f.write(HANDLER)
    os.chmod(handler, 0o755)
    server = Httpd("chroot", scratch)
    server.spool = os.path.join(inside, "spool")
    server.ran = os.path.join(out, "ran.log")
    server.write_config(f"""ChrootDir {jail}
HrflowSpool {server.spool}
<Location /q>
    SetHandler hrflow-webhook
    HrflowSignature optional
    HrflowHandler * {inside}/handler.sh {inside}/out/ran.log
</Location>
""")
    server.start()
    yield server
    server.stop()
    os.unlink(inside)
    shutil.rmtree(jail, ignore_errors=True)


def test_events_are_spooled_and_run_without_proc(jailed):
    for i in range(3):
        body = ('[{"type":"profile.parsing.success","n":%d},'
                '{"type":"job.storing.update","n":%d}]' % (i, i)).encode()
        r, data = jailed.request("POST", "/q", body, JSON)
        assert r.status == 202, data
        assert b'"queued":2' in data
    ran = wait_until(lambda: len(lines(jailed.ran)) == 6 and
                     lines(jailed.ran))
    assert ran and all(line.split()[1] == "1" for line in ran)
    assert len({line.split()[0] for line in ran}) == 6   # each once
    assert wait_until(lambda: spool_empty(jailed))
    assert os.listdir(os.path.join(jailed.spool, "tmp")) == []
