"""The packages test's policy-rc.d guard, without installing anything: an
apt-get that never returns (killed by its timeout) or an interrupt must
still put the administrator's policy-rc.d back and take the temporary one
away."""
import os
import subprocess

import pytest

import test_packages as tp


def test_policy_rc_d_restored_when_apt_get_raises(tmp_path, monkeypatch):
    policy = tmp_path / "policy-rc.d"
    original = "#!/bin/sh\n# the administrator's\nexit 0\n"
    policy.write_text(original)
    policy.chmod(0o755)
    top = tmp_path / "top"
    top.mkdir()

    def apt_hangs(*args):
        raise subprocess.TimeoutExpired(["apt-get", *args], 600)

    monkeypatch.setattr(tp, "POLICY_RC_D", str(policy))
    monkeypatch.setattr(tp, "missing", lambda tools: None)
    monkeypatch.setattr(tp, "install_skip_reason", lambda: None)
    monkeypatch.setattr(tp, "snapshot", lambda: {})
    monkeypatch.setattr(tp, "dpkg_known", lambda p: True)
    monkeypatch.setattr(tp, "apt", apt_hangs)
    with pytest.raises(subprocess.TimeoutExpired):
        tp.test_packages_install_enable_event_purge((str(top), "x.changes",
                                                     []))
    assert policy.read_text() == original
    assert os.listdir(top) == [], "a saved policy-rc.d left in the scratch"


def test_a_stopped_apache_is_not_started_by_the_postinst(tmp_path,
                                                         monkeypatch):
    """On a systemd host an enabled apache2 that is stopped (as deps.sh
    leaves it) is started by the postinst's `invoke-rc.d apache2 restart`:
    the policy must refuse apache2 whether or not it runs now."""
    policy = tmp_path / "policy-rc.d"
    top = tmp_path / "top"
    top.mkdir()
    seen = []

    def apt_records_policy(*args):
        if args[0] == "install":
            r = subprocess.run([str(policy), "apache2", "restart"]) \
                if os.access(policy, os.X_OK) else None
            seen.append(r.returncode if r else "no policy-rc.d")
            raise RuntimeError("stop here")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(tp, "POLICY_RC_D", str(policy))
    monkeypatch.setattr(tp, "missing", lambda tools: None)
    monkeypatch.setattr(tp, "install_skip_reason", lambda: None)
    monkeypatch.setattr(tp, "snapshot", lambda: {})
    monkeypatch.setattr(tp, "dpkg_known", lambda p: False)
    monkeypatch.setattr(tp, "apt", apt_records_policy)
    with pytest.raises(RuntimeError):
        tp.test_packages_install_enable_event_purge((str(top), "x.changes",
                                                     []))
    assert seen == [101]
    assert not os.path.lexists(policy), "the temporary policy-rc.d stays"
