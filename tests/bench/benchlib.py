"""What the benchmarks share: the sample event, its signature, and wrk."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from conftest import Httpd  # noqa: E402,F401
from hrflow_sign import signed_value  # noqa: E402

SECRET = "bench-secret"
EVENT = {"type": "profile.parsing.success", "origin": "api",
         "message": "profile parsing succeed",
         "profile": {"key": "d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d",
                     "source": {"key": "d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"},
                     "tags": [{"name": "skill", "value": "c"}]}}
POST_LUA = """wrk.method = "POST"
wrk.headers["HTTP-HRFLOW-SIGNATURE"] = os.getenv("HRFLOW_SIG")
"""


def args(default_seconds=10, default_conns=32):
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else default_seconds
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else default_conns
    return seconds, conns


def make_scratch(mode=0o755):
    """A scratch folder the server's user can reach, with an htdocs/."""
    scratch = tempfile.mkdtemp(prefix="hrflow-bench-")
    os.chmod(scratch, mode)
    os.makedirs(os.path.join(scratch, "htdocs"))
    return scratch


def assert_ignored(server, path, env):
    """The signed EVENT is accepted at path and, as meant, ignored."""
    r, body = server.request("POST", path, b"",
                             {"HTTP-HRFLOW-SIGNATURE": env["HRFLOW_SIG"]})
    assert r.status == 200 and b'"ignored":1' in body, body


def signed_env(root):
    """wrk's script and environment for a signed POST of EVENT."""
    script = os.path.join(root, "post.lua")
    with open(script, "w") as f:
        f.write(POST_LUA)
    env = dict(os.environ, HRFLOW_SIG=signed_value(
        SECRET, json.dumps(EVENT).encode()))
    return script, env


def wrk(url, seconds, conns, script=None, env=None):
    """(requests per second, non-2xx answers) of one wrk run."""
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(bad.group(1)) if bad else 0


def one_process(server, threads=64):
    """One server process with many threads: its counters are the server's."""
    with open(server.conf) as f:
        text = f.read()
    text = (text.replace("ServerLimit 2", "ServerLimit 1")
            .replace("ThreadsPerChild 25", f"ThreadsPerChild {threads}")
            .replace("MaxRequestWorkers 50", f"MaxRequestWorkers {threads}")
            .replace("MaxSpareThreads 50", f"MaxSpareThreads {threads}"))
    with open(server.conf, "w") as f:
        f.write(text)
