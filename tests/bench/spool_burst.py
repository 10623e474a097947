"""A burst of signed events against mod_hrflow's durable mode and against
the `webhook` Debian package running the same script, in one run: requests
answered per second, and how many of the answered events' scripts ran.

    tests/bench/spool_burst.sh [SECONDS] [CONNECTIONS]

Wait a minute between two runs: on an ext4 without a journal, creating
files right after many were deleted (the previous run's clean-up) is
slower, and the second run measures that.
"""
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import time

from benchlib import EVENT, SECRET, Httpd, args, make_scratch, one_process
from conftest import MODULES_DIR, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
BODY = json.dumps(EVENT)
SIGNATURE = "sha256=" + hmac.new(SECRET.encode(), BODY.encode(),
                                 hashlib.sha256).hexdigest()
LUA = f"""wrk.method = "POST"
wrk.body = {json.dumps(BODY)}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["HRFLOW-SIGNATURE"] = "{SIGNATURE}"
wrk.headers["X-Signature"] = "{SIGNATURE}"
"""


def burst(url, seconds, conns, script):
    """(answers per second, 2xx answers) of one wrk run."""
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s",
                          script, url], capture_output=True, text=True,
                         check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    ok = total - (int(bad.group(1)) if bad else 0)
    return rps, ok, errors.group(0) if errors else "no socket errors"


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def settle(path, done=lambda: True, quiet=5, limit=300):
    """Waits until the count stops growing (and done()); returns it."""
    last, since, start = -1, time.time(), time.time()
    while time.time() - start < limit:
        n = count_lines(path)
        if n != last:
            last, since = n, time.time()
        elif time.time() - since >= quiet and done():
            break
        time.sleep(0.5)
    return last


def run_webhook(scratch, seconds, conns, script):
    out = os.path.join(scratch, "webhook-ran.log")
    hooks = os.path.join(scratch, "hooks.json")
    with open(hooks, "w") as f:
        json.dump([{
            "id": "hrflow",
            "execute-command": os.path.join(scratch, "append.sh"),
            "pass-arguments-to-command": [{"source": "string", "name": out}],
            "trigger-rule": {"match": {
                "type": "payload-hmac-sha256", "secret": SECRET,
                "parameter": {"source": "header", "name": "X-Signature"}}},
        }], f)
    port = free_port()
    proc = subprocess.Popen(["webhook", "-hooks", hooks, "-ip", "127.0.0.1",
                             "-port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(scratch, "webhook.err"),
                                        "w"))
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        rps, ok, errors = burst(f"http://127.0.0.1:{port}/hooks/hrflow",
                                seconds, conns, script)
        ran = settle(out)
    finally:
        proc.terminate()
        proc.wait()
    too_many = open(os.path.join(scratch, "webhook.err")).read().count(
        "too many open files")
    return rps, ok, ran, errors, too_many


def run_spool(scratch, seconds, conns, script):
    out = os.path.join(scratch, "out", "spool-ran.log")
    spool = os.path.join(scratch, "spool")
    server = Httpd("bench-spool", scratch)
    # Go's server keeps connections open for good; so may Apache here.
    server.write_config(f"""LogLevel warn
MaxKeepAliveRequests 0
LoadModule status_module {MODULES_DIR}/mod_status.so
<Location /server-status>
    SetHandler server-status
</Location>
HrflowSpool {spool}
<Location /hook>
    SetHandler hrflow-webhook
    HrflowSecret {SECRET}
    HrflowHandler * {scratch}/append.sh {out}
</Location>
""")
    one_process(server, 2 * conns)
    server.start()
    try:
        rps, ok, errors = burst(f"http://127.0.0.1:{server.port}/hook",
                                seconds, conns, script)
        _, status = server.request("GET", "/server-status?auto")
        stats = dict(re.findall(r"(HrflowProcess\w+): (\d+)", status.decode()))

        def drained():
            return not any(os.listdir(os.path.join(spool, s))
                           for s in ("new", "run", "retry"))
        ran = settle(out, drained)
    finally:
        server.stop()
    return rps, ok, ran, errors, stats


def main():
    seconds, conns = args(3, 64)
    # The spool's parent may be writable by root only; the handlers run as
    # the server's user and write their lines in out/.
    scratch = make_scratch(0o755)
    os.mkdir(os.path.join(scratch, "out"))
    os.chmod(os.path.join(scratch, "out"), 0o777)
    shutil.copy(os.path.join(HERE, "append.sh"), scratch)
    script = os.path.join(scratch, "post.lua")
    with open(script, "w") as f:
        f.write(LUA)
    try:
        w = run_webhook(scratch, seconds, conns, script)
        s = run_spool(scratch, seconds, conns, script)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrk -t2 -c{conns} -d{seconds}s, signed JSON event, "
          f"script appends a line")
    print(f"{'':22}{'answers/s':>10}{'2xx':>9}{'ran':>9}  lost")
    print(f"{'webhook (Debian)':22}{w[0]:10.0f}{w[1]:9d}{w[2]:9d}"
          f"{w[1] - w[2]:6d}   {w[3]}; 'too many open files' x{w[4]}")
    print(f"{'mod_hrflow spool':22}{s[0]:10.0f}{s[1]:9d}{s[2]:9d}"
          f"{s[1] - s[2]:6d}   {s[3]}")
    groups = int(s[4].get("HrflowProcessCommitGroups", 0))
    events = int(s[4].get("HrflowProcessCommitted", 0))
    if events:
        print(f"group commit: {events} events made durable in {groups} "
              f"groups ({events / groups:.1f} events per group commit)")
    print(f"ratio answers/s spool/webhook {s[0] / w[0]:.2f}")


if __name__ == "__main__":
    main()
