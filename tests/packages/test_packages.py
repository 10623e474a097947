"""The Debian packages, the way an administrator meets them.

From a copy of the source, `dpkg-buildpackage -us -uc` (no root needed)
builds libapache2-mod-hrflow and hrflow-cgi, and lintian finds nothing,
warnings included, beyond the explained overrides.  As root, `apt-get
install ./...deb` installs them and the postinst has enabled the module.
Then, in a COPY of /etc/apache2 (APACHE_CONFDIR, its own state, run and
log folders and a free port): `a2enmod hrflow`, the installed example
vhost with a secret in place (`a2ensite`), `apache2ctl configtest`, a
start, a signed event, and the shipped handler the example maps runs.
Last, `apt-get purge` leaves /etc/apache2 and /var/lib/apache2 as they
were.

The machine's own Apache is never restarted, nor started: unless a
policy-rc.d already forbids it, a temporary one does while packages are
installed and purged.
"""
import fnmatch
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

from conftest import BUILD, CRASH_MARKS, SECRETS, TEST_TMP  # noqa: E402
from hrflow_sign import signed_value  # noqa: E402
from test_debian import DebianApache  # noqa: E402

PACKAGES = ("libapache2-mod-hrflow", "hrflow-cgi", "hrflow-worker")
CONFDIR = "/etc/apache2"
STATE = ("/etc/apache2", "/var/lib/apache2")
POLICY_RC_D = "/usr/sbin/policy-rc.d"
# Real HrFlow types, to find one an example pattern maps.
KNOWN_TYPES = ("profile.parsing.success", "profile.parsing.failure",
               "profile.scoring.error", "profile.storing.update",
               "job.storing.update", "job.matching.success")
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "lintian", "git", "readelf")
APACHE_TOOLS = ("apt-get", "a2enmod", "a2ensite", "apache2ctl")


def missing(tools):
    gone = [t for t in tools if not shutil.which(t)]
    if gone:
        pytest.skip("missing " + ", ".join(gone) + " (scripts/deps.sh)")


def install_skip_reason():
    if os.geteuid() != 0:
        return "installing the packages needs root"
    installed = [p for p in PACKAGES if dpkg_installed(p)]
    if installed:
        return (", ".join(installed) + " already installed here: the test "
                "would replace and purge it")
    return None


def dpkg_installed(package):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                       capture_output=True, text=True)
    return r.returncode == 0 and "installed" in r.stdout.split()


def dpkg_known(package):
    """Installed, or removed with its conffiles left: purge has work."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}",
                        package], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout[1:2] in ("i", "c")


def run(args, cwd=None, env=None, timeout=600):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}:\n{r.stdout[-4000:]}{r.stderr[-4000:]}"
    return r.stdout


def snapshot():
    """Every name under STATE, with a symlink's target or a file's digest."""
    seen = {}
    for root in STATE:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    seen[path] = "-> " + os.readlink(path)
                elif os.path.isfile(path):
                    with open(path, "rb") as f:
                        seen[path] = hashlib.sha256(f.read()).hexdigest()
                else:
                    seen[path] = "dir"
    return seen


def forget_state_dirs(before):
    """a2dismod's purge leaves its empty state folders (disabled_by_admin,
    disabled_by_maint) in /var/lib/apache2: those it made, go."""
    for folder, dirs, files in os.walk(STATE[1], topdown=False):
        if folder not in before and not dirs and not files:
            os.rmdir(folder)


def source_files():
    """What is in the repository (tracked, or new and not ignored), or
    None outside a git checkout."""
    # safe.directory: the checkout may belong to another user than root.
    r = subprocess.run(["git", "-c", f"safe.directory={TOP}", "-C", TOP,
                        "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], capture_output=True)
    if r.returncode != 0:
        return None
    names = [n for n in r.stdout.decode().split("\0") if n]
    return [n for n in names if os.path.lexists(os.path.join(TOP, n))]


def version():
    line = open(os.path.join(TOP, "debian", "changelog")).readline()
    return re.match(r"\S+ \(([^)]+)\)", line).group(1)


def copy_source(top):
    """The source as a release tarball holds it: the orig tarball without
    debian/, the unpacked tree with it.  From git's list of files, else
    from `make dist` in the configured build folder."""
    upstream = version().rsplit("-", 1)[0]
    src = os.path.join(top, "src")
    orig = os.path.join(top, f"libapache2-mod-hrflow_{upstream}.orig.tar.gz")
    names = source_files()
    if names is None:
        return dist_source(top, src, orig, upstream)
    for name in names:
        dst = os.path.join(src, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(TOP, name), dst, follow_symlinks=False)
    run(["tar", "-C", top, "--exclude=src/debian", "-czf", orig,
         f"--transform=s|^src|mod_hrflow-{upstream}|", "src"])
    return src


def dist_source(top, src, orig, upstream):
    if not os.path.isfile(os.path.join(BUILD, "Makefile")):
        pytest.skip("neither a git checkout nor a configured build folder "
                    f"({BUILD}) to make the release tarball in")
    run(["make", "-C", BUILD, "dist"])
    shutil.move(os.path.join(BUILD, f"mod_hrflow-{upstream}.tar.gz"), orig)
    os.makedirs(src)
    run(["tar", "-C", src, "--strip-components=1", "-xzf", orig])
    shutil.copytree(os.path.join(TOP, "debian"), os.path.join(src, "debian"))
    return src


def build(top):
    src = copy_source(top)
    env = dict(os.environ,
               DEB_BUILD_OPTIONS=f"nocheck parallel={os.cpu_count()}")
    run(["dpkg-buildpackage", "-us", "-uc"], cwd=src, env=env)
    changes = glob.glob(os.path.join(top, "*.changes"))
    assert len(changes) == 1, os.listdir(top)
    debs = {p: glob.glob(os.path.join(top, f"{p}_*.deb"))
            for p in PACKAGES}
    assert all(len(v) == 1 for v in debs.values()), os.listdir(top)
    return changes[0], [v[0] for v in debs.values()]


class NoApacheRestarts:
    """A policy-rc.d refusing apache2 actions, for as long as packages are
    installed and purged, unless one refuses them already: the postinst's
    `invoke-rc.d apache2 restart` would restart a running server, and on a
    systemd host start an enabled one that is stopped.  The previous file,
    if any, comes back."""

    TEXT = ("#!/bin/sh\n# temporary, tests/packages/test_packages.py: the "
            "running apache2 is not ours\nfor a; do case $a in -*) ;; "
            "apache2) exit 101 ;; *) exit 0 ;; esac; done\nexit 0\n")

    def __init__(self, top):
        self.saved = None
        self.placed = False
        if self.refused():
            return
        if os.path.lexists(POLICY_RC_D):
            self.saved = os.path.join(top, "policy-rc.d.saved")
            shutil.move(POLICY_RC_D, self.saved)
        with open(POLICY_RC_D, "w") as f:
            f.write(self.TEXT)
        os.chmod(POLICY_RC_D, 0o755)
        self.placed = True

    @staticmethod
    def refused():
        if not os.access(POLICY_RC_D, os.X_OK):
            return False
        r = subprocess.run([POLICY_RC_D, "apache2", "restart"],
                           capture_output=True)
        return r.returncode == 101

    def restore(self):
        if self.placed:
            os.unlink(POLICY_RC_D)
            if self.saved:
                shutil.move(self.saved, POLICY_RC_D)
            self.placed = False


def apt(*args):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", "-y", "-o", "DPkg::Lock::Timeout=300",
                           *args], capture_output=True, text=True, env=env,
                          timeout=600)


def check_fields():
    """The .load and .conf are conffiles; httpd's module API is a Depends."""
    fields = run(["dpkg-query", "-W", "-f=${Conffiles}\n${Depends}",
                  PACKAGES[0]])
    for name in ("hrflow.load", "hrflow.conf"):
        assert f"/etc/apache2/mods-available/{name} " in fields, fields
    assert re.search(r"\bapache2-api-\d{8}\b", fields), fields


def check_static_cgi():
    """hrflow.cgi needs no APR, json-c or libcrypto on the host."""
    cgi = "/usr/libexec/mod_hrflow/hrflow.cgi"
    assert os.access(cgi, os.X_OK)
    needed = re.findall(r"\(NEEDED\).*\[(\S+)\]",
                        run(["readelf", "-d", cgi]))
    shared = [n for n in needed if re.match(r"lib(apr|json-c|crypto|ssl)", n)]
    assert needed and not shared, needed


def check_cgi_upload(folder):
    """/usr/share/mod_hrflow/cgi is what a customer uploads (as `make
    dist-cgi` packs it): copied with its program, with a secret added, it
    passes --check and serves a signed event to a shipped handler."""
    shutil.copytree("/usr/share/mod_hrflow/cgi", folder, symlinks=False)
    for name in ("hrflow.cgi", "hrflow.conf", "htaccess", "README",
                 "handlers/show-env.sh", "handlers/log-event.sh"):
        assert os.path.isfile(os.path.join(folder, name)), name
    secret = os.path.join(folder, "hrflow.secret")
    with open(secret, "w") as f:
        f.write(SECRETS[1] + "\n")
    os.chmod(secret, 0o600)
    run(["./hrflow.cgi", "--check", "hrflow.conf"], cwd=folder)
    key = "cgi-" + os.urandom(6).hex()
    payload = json.dumps({"type": "profile.scoring.error",
                          "profile": {"key": key}}).encode()
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_INTERFACE": "CGI/1.1",
           "REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json",
           "CONTENT_LENGTH": str(len(payload)),
           "SCRIPT_FILENAME": os.path.join(folder, "hrflow.cgi"),
           "HTTP_HRFLOW_SIGNATURE": signed_value(SECRETS[1], payload)}
    r = subprocess.run(["./hrflow.cgi"], cwd=folder, env=env, input=payload,
                       capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out.startswith("Status: 200"), (
        out, r.stderr.decode(errors="replace"))
    logged = "".join(open(p, errors="replace").read() for p in glob.glob(
        os.path.join(folder, "**", "events.log"), recursive=True))
    assert f"profile={key} " in logged, (out, logged)


def example_path():
    found = glob.glob("/usr/share/mod_hrflow/hrflow-*")
    assert len(found) == 1, f"the example vhost: {found}"
    return found[0]


def example_site(server):
    """The installed example with what an administrator changes: the port,
    a secret in the file it names (in the copy of /etc/apache2), and the
    file log-event.sh appends to.  Every handler it maps is installed.
    Returns the site, its location, its host and an event type it maps."""
    text = open(example_path()).read()
    text, n = re.subn(r"<VirtualHost \*:\d+>",
                      f"<VirtualHost 127.0.0.1:{server.port}>", text)
    assert n == 1, text
    named = re.findall(r"^\s*HrflowSecretFile (\S+)", text, re.M)
    assert len(named) == 1, text
    secret_file = named[0].replace(CONFDIR + "/", server.confdir + "/", 1)
    assert secret_file.startswith(server.confdir + "/"), named
    with open(secret_file, "w") as f:
        f.write(SECRETS[0] + "\n")
    os.chmod(secret_file, 0o600)
    text = text.replace(named[0], secret_file)
    host = re.search(r"^\s*ServerName (\S+)", text, re.M).group(1)
    location = re.search(r"^\s*<Location (\S+)>", text, re.M).group(1)
    patterns = []

    def handler(m):
        indent, pattern, program = m.group(1), m.group(2), m.group(3)
        assert os.access(program, os.X_OK), f"not installed: {program}"
        patterns.append(pattern)
        if os.path.basename(program) == "log-event.sh":
            out = os.path.join(server.top, "out", "events.log")
            return f"{indent}HrflowHandler {pattern} {program} {out}"
        return m.group(0)

    text = re.sub(r"^(\s*)HrflowHandler\s+(\S+)\s+(\S+).*$", handler, text,
                  flags=re.M)
    assert patterns, "the example maps no handler"
    etype = next(t for t in KNOWN_TYPES
                 if fnmatch.fnmatchcase(t, patterns[0]))
    return text, location, host, etype


def handler_ran(server, key, timeout=30):
    """The shipped handlers leave the profile key where they write:
    show-env.sh its variables in the error log, log-event.sh a line in
    its file."""
    marks = (f"HRFLOW_PROFILE_KEY={key}", f"profile={key} ")
    out = os.path.join(server.top, "out", "events.log")
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = server.logs()
        if os.path.exists(out):
            text += open(out).read()
        if any(m in text for m in marks):
            return True
        time.sleep(0.1)
    return False


def drive_copy(top):
    """a2enmod, a2ensite, configtest, start and a signed event in a copy of
    /etc/apache2; the shipped handler must record the event."""
    server = DebianApache(top)
    os.chmod(os.path.join(top, "out"), 0o777)
    try:
        run(["a2enmod", "hrflow"], env=server.env)
        # As the example's own first lines say.
        site, location, host, etype = example_site(server)
        with open(os.path.join(server.confdir, "sites-available",
                               "hrflow.conf"), "w") as f:
            f.write(site)
        run(["a2ensite", "hrflow"], env=server.env)
        r = server.ctl("configtest")
        assert r.returncode == 0, r.stdout + r.stderr
        server.start()
        key = "pkg-" + os.urandom(6).hex()
        event = {"type": etype, "profile": {"key": key}}
        status, body = server.post(location, host, SECRETS[0], event)
        assert status in (200, 202), (status, body, server.logs()[-2000:])
        assert handler_ran(server, key), server.logs()[-2000:]
        status, body = server.post(location, host, "not-the-secret", event)
        assert status == 401, (status, body)
    finally:
        server.stop()
    logs = server.logs()
    for mark in CRASH_MARKS:
        assert mark not in logs, logs[-3000:]
    assert SECRETS[0] not in logs


def test_packages_version_is_configure_version():
    """debian/changelog follows AC_INIT: a new version needs its entry."""
    text = open(os.path.join(TOP, "configure.ac")).read()
    upstream = re.search(r"AC_INIT\(\[[^]]*\],\s*\[([^]]+)\]", text).group(1)
    assert version().rsplit("-", 1)[0] == upstream, (version(), upstream)


@pytest.fixture(scope="module")
def built():
    """The packages, built once from a copy of the source."""
    missing(BUILD_TOOLS)
    top = tempfile.mkdtemp(prefix="hrflow-packages-", dir=TEST_TMP)
    os.chmod(top, 0o755)
    try:
        changes, debs = build(top)
        yield top, changes, debs
    finally:
        if not os.environ.get("HRFLOW_KEEP_SCRATCH"):
            shutil.rmtree(top, ignore_errors=True)


def test_packages_build_lintian_clean(built):
    top, changes, debs = built
    r = subprocess.run(["lintian", "--fail-on", "error,warning", changes],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_packages_install_enable_event_purge(built):
    missing(APACHE_TOOLS)
    reason = install_skip_reason()
    if reason:
        pytest.skip(reason)
    top, changes, debs = built
    before = snapshot()
    guard = NoApacheRestarts(top)
    try:
        r = apt("install", *debs)
        assert r.returncode == 0, r.stdout + r.stderr
        # The postinst, through apache2-maintscript-helper, enabled it.
        assert os.path.islink(os.path.join(CONFDIR, "mods-enabled",
                                           "hrflow.load"))
        assert os.path.isfile("/usr/lib/apache2/modules/mod_hrflow.so")
        check_fields()
        check_static_cgi()
        check_cgi_upload(os.path.join(top, "upload"))
        drive_copy(os.path.join(top, "apache"))
        # Removed, not purged: the prerm disabled it, the conffiles stay.
        r = apt("remove", *PACKAGES)
        assert r.returncode == 0, r.stdout + r.stderr
        avail = os.path.join(CONFDIR, "mods-available")
        assert not os.path.lexists(os.path.join(CONFDIR, "mods-enabled",
                                                "hrflow.load"))
        assert os.path.isfile(os.path.join(avail, "hrflow.load"))
        assert not os.path.exists("/usr/lib/apache2/modules/mod_hrflow.so")
    finally:
        # The administrator's policy-rc.d comes back even if apt-get
        # hangs past its timeout: the scratch folder that holds it goes.
        try:
            r = apt("purge", *[p for p in PACKAGES if dpkg_known(p)])
        finally:
            guard.restore()
    assert r.returncode == 0, r.stdout + r.stderr
    for p in PACKAGES:
        assert not dpkg_known(p)
    forget_state_dirs(before)
    after = snapshot()
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}
    assert {k: v for k, v in before.items() if after.get(k) != v} == {}
