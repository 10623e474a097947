"""Requests per second of verify+parse (no handler runs) against a static file
served by the same Apache, in one run, with wrk.

    tests/bench/throughput.sh [SECONDS] [CONNECTIONS]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from conftest import Httpd  # noqa: E402
from hrflow_sign import signed_value  # noqa: E402

SECRET = "bench-secret"
EVENT = {"type": "profile.parsing.success", "origin": "api",
         "message": "profile parsing succeed",
         "profile": {"key": "d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d",
                     "source": {"key": "d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"},
                     "tags": [{"name": "skill", "value": "c"}]}}
LUA = """wrk.method = "POST"
wrk.headers["HTTP-HRFLOW-SIGNATURE"] = os.getenv("HRFLOW_SIG")
"""


def wrk(url, seconds, conns, script=None, env=None):
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(bad.group(1)) if bad else 0


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    scratch = tempfile.mkdtemp(prefix="hrflow-bench-")
    os.chmod(scratch, 0o755)
    os.makedirs(os.path.join(scratch, "htdocs"))
    with open(os.path.join(scratch, "htdocs", "static.json"), "w") as f:
        f.write(json.dumps({"status": "ok", "events": 1, "handled": 0,
                            "ignored": 1}))
    server = Httpd("bench", scratch)
    # /bin/true for job.* only: the profile event is verified, parsed,
    # flattened, routed, and ignored.
    server.write_config(f"""LogLevel warn
<Location /hook>
    SetHandler hrflow-webhook
    HrflowSecret {SECRET}
    HrflowHandler job.* /bin/true
</Location>
""".replace("ThreadsPerChild 25", "ThreadsPerChild 64"))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        script = os.path.join(server.root, "post.lua")
        with open(script, "w") as f:
            f.write(LUA)
        env = dict(os.environ, HRFLOW_SIG=signed_value(
            SECRET, json.dumps(EVENT).encode()))
        r, body = server.request("POST", "/hook", b"",
                                 {"HTTP-HRFLOW-SIGNATURE": env["HRFLOW_SIG"]})
        assert r.status == 200 and b'"ignored":1' in body, body
        static, s_bad = wrk(base + "/static.json", seconds, conns)
        hook, h_bad = wrk(base + "/hook", seconds, conns, script, env)
        print(f"wrk -t2 -c{conns} -d{seconds}s, one Apache (event MPM)")
        print(f"static file        {static:10.0f} req/s  non-2xx {s_bad}")
        print(f"verify+parse       {hook:10.0f} req/s  non-2xx {h_bad}")
        print(f"ratio hook/static  {hook / static:10.2f}")
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
