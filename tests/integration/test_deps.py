"""scripts/deps.sh: build, test, run and bench needs apart (a production
host gets no compiler, valgrind or clang), and never a server stopped or
started: while apt-get installs, a policy-rc.d answers 101 ("not now"), and
one the administrator has is left alone.  Run against fake dpkg-query,
apt-get and server controls, so nothing is installed."""
import os
import subprocess

import pytest

from conftest import HERE

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
DEPS = os.path.join(TOP, "scripts", "deps.sh")
CONTROLS = ("apachectl", "apache2ctl", "systemctl", "service", "invoke-rc.d",
            "pkill", "killall", "kill", "lighttpd-enable-mod")

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="deps.sh installs only as root")


def packages(*needs):
    r = subprocess.run([DEPS, "--print", *needs], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_a_production_host_gets_no_build_or_test_tools():
    run = packages("run")
    assert "apache2" in run
    for tool in ("valgrind", "clang", "gcc", "check", "python3-pytest",
                 "lintian", "lighttpd"):
        assert tool not in run
    assert not [p for p in run if p.endswith("-dev")]


def test_the_default_is_build_and_test():
    default = packages()
    assert default == packages("build", "test")
    for p in ("gcc", "apache2-dev", "valgrind", "clang", "check", "man-db",
              "lighttpd", "apache2-suexec-pristine", "lintian", "debhelper",
              "dpkg-dev", "fakeroot"):
        assert p in default, p
    assert "wrk" not in default and "wrk" in packages("bench")


def fake_bin(folder, log):
    """dpkg-query says nothing is installed; apt-get records its arguments
    and what policy-rc.d answers meanwhile; every server control and
    pgrep (which finds an Apache) record that they were called."""
    os.makedirs(folder)
    scripts = {
        "dpkg-query": "exit 1\n",
        "apt-cache": "exit 0\n",
        "apt-get": 'echo "apt-get $*" >>"$LOG"\n'
                   '"$POLICY_RC_D" apache2 start\n'
                   'echo "policy $?" >>"$LOG"\n',
        "pgrep": 'echo "pgrep $*" >>"$LOG"\necho 4242\n',
    }
    for name in CONTROLS:
        scripts[name] = f'echo "CONTROL {name} $*" >>"$LOG"\n'
    for name, body in scripts.items():
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)


def run_deps(tmp_path, policy):
    log = tmp_path / "calls.log"
    log.touch()
    fake_bin(str(tmp_path / "bin"), str(log))
    env = {"PATH": f"{tmp_path}/bin:/usr/bin:/bin", "LOG": str(log),
           "POLICY_RC_D": str(policy)}
    r = subprocess.run([DEPS, "test"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return log.read_text().splitlines()


def test_no_service_starts_while_installing_and_none_is_stopped(tmp_path):
    policy = tmp_path / "policy-rc.d"
    calls = run_deps(tmp_path, policy)
    assert [c for c in calls if c.startswith("apt-get install")]
    # Every apt-get call ran while policy-rc.d said 101.
    assert [c for c in calls if c.startswith("policy")] \
        and all(c == "policy 101" for c in calls if c.startswith("policy"))
    assert not [c for c in calls if c.startswith("CONTROL")], calls
    assert not policy.exists(), "the temporary policy-rc.d is removed"


def test_an_existing_policy_rc_d_is_left_alone(tmp_path):
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\n# the administrator's\nexit 0\n")
    policy.chmod(0o755)
    calls = run_deps(tmp_path, policy)
    assert policy.read_text() == "#!/bin/sh\n# the administrator's\nexit 0\n"
    assert "policy 0" in calls
    assert not [c for c in calls if c.startswith("CONTROL")], calls


def test_a_dangling_policy_rc_d_link_is_left_alone(tmp_path):
    """An administrator's symlink whose target is not there (yet) is theirs
    too: neither written through nor removed."""
    policy = tmp_path / "policy-rc.d"
    target = tmp_path / "elsewhere" / "policy"
    (tmp_path / "elsewhere").mkdir()
    policy.symlink_to(target)
    calls = run_deps(tmp_path, policy)
    assert os.path.islink(policy), "the administrator's link is gone"
    assert os.readlink(policy) == str(target)
    assert not target.exists(), "written through the administrator's link"
    assert not [c for c in calls if c.startswith("CONTROL")], calls
