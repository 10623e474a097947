"""Gateway mode's cost: an application alone behind Apache against the same
application behind `HrflowVerify on`, for mod_proxy_http (a trivial C
backend, trivial_backend.c) and mod_proxy_fcgi (php-fpm running
`<?php echo "ok";`), in one Apache, with wrk.

    tests/bench/gateway.sh [SECONDS] [CONNECTIONS] [ROUNDS]

Every request is the form body of SPEC section 1 (HRFLOW_GATEWAY_BODY=json:
the same event as a JSON object), signed with the body's HMAC (a value with
no "."), the same for all four locations:

  /plain-http/     ProxyPass to the backend
  /verified-http/  the same, with HrflowVerify on
  /plain-php/      ProxyPass to php-fpm (unix socket)
  /verified-php/   the same, with HrflowVerify on

ROUNDS rounds (default 3) of SECONDS (default 5) each per location, plain
and verified alternated (the first of each pair alternates too), so that
whatever else the machine does falls on both.  Printed per location:
requests per second over all rounds, the median of the rounds' p50 and p99
latencies, and the CPU time per request of Apache (all its processes) and
of the application (the backend, or php-fpm's processes); then
verified/plain for each application.  Any answer other than 2xx (wrk's
count of 4xx and 5xx, then every line of the access log), any socket
error, or a verified request without its event's variables makes the run
fail: the figures would be meaningless.

HRFLOW_MPM (default event) names the MPM; HRFLOW_PHP_FPM the php-fpm
program (default /usr/sbin/php-fpm8.2, else the newest /usr/sbin/php-fpm*).
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

from benchlib import EVENT, SECRET, Httpd, make_scratch
from conftest import BUILD, MODULES_DIR, MPM, make_dir, run_user
from hrflow_sign import body_signature

TICK = os.sysconf("SC_CLK_TCK")
KINDS = ("http", "php")

# The form body of SPEC section 1 (the JSON-valued field as a string), or
# the event as JSON.
BODY_KIND = os.environ.get("HRFLOW_GATEWAY_BODY", "form")
if BODY_KIND == "json":
    BODY = json.dumps(EVENT)
    CONTENT_TYPE = "application/json"
elif BODY_KIND == "form":
    BODY = urllib.parse.urlencode({
        "type": EVENT["type"], "origin": EVENT["origin"],
        "message": EVENT["message"], "profile": json.dumps(EVENT["profile"])})
    CONTENT_TYPE = "application/x-www-form-urlencoded"
else:
    sys.exit(f"HRFLOW_GATEWAY_BODY={BODY_KIND}: form or json")
SIGNATURE = body_signature(SECRET, BODY.encode())

LUA = """wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "%s"
wrk.headers["HTTP-HRFLOW-SIGNATURE"] = "%s"

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "HRFLOW requests=%%d duration_us=%%d p50_us=%%d p99_us=%%d "
        .. "connect=%%d read=%%d write=%%d status=%%d timeout=%%d\\n",
        summary.requests, summary.duration, latency:percentile(50),
        latency:percentile(99), e.connect, e.read, e.write, e.status,
        e.timeout))
end
""" % (json.dumps(BODY), CONTENT_TYPE, SIGNATURE)


def args():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    return seconds, conns, rounds


def php_fpm_program():
    prog = os.environ.get("HRFLOW_PHP_FPM")
    if prog:
        return prog
    if os.access("/usr/sbin/php-fpm8.2", os.X_OK):
        return "/usr/sbin/php-fpm8.2"
    found = sorted(glob.glob("/usr/sbin/php-fpm*"))
    if not found:
        sys.exit("gateway: no php-fpm (scripts/deps.sh bench installs it)")
    return found[-1]


def cpu_ticks(pid, children=True):
    """utime + stime of pid (with its reaped children's), 0 once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def family_ticks(parent):
    """CPU ticks of parent, its live children and those it reaped."""
    total = cpu_ticks(parent)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += cpu_ticks(int(stat.split("/")[2]), children=False)
    return total


class Backend:
    """trivial_backend on a free port of 127.0.0.1."""

    def __init__(self, threads=1):
        prog = os.path.join(BUILD, "tests", "bench", "trivial_backend")
        if not os.access(prog, os.X_OK):
            sys.exit(f"gateway: {prog} missing: make -C {BUILD} "
                     "tests/bench/trivial_backend")
        self.proc = subprocess.Popen([prog, str(threads)],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class PhpFpm:
    """php-fpm on a unix socket in the scratch folder, pm static, its pool
    running as the server's user, serving ok.php."""

    def __init__(self, scratch, children=4):
        self.dir = make_dir(os.path.join(scratch, "php"))
        self.sock = os.path.join(self.dir, "fpm.sock")
        self.script = os.path.join(self.dir, "ok.php")
        with open(self.script, "w") as f:
            f.write('<?php echo "ok";\n')
        user, group = run_user()
        conf = os.path.join(self.dir, "fpm.conf")
        with open(conf, "w") as f:
            f.write(f"""[global]
pid = {self.dir}/fpm.pid
error_log = {self.dir}/fpm.log
daemonize = no

[bench]
user = {user}
group = {group or user}
listen = {self.sock}
listen.owner = {user}
listen.group = {group or user}
listen.mode = 0660
listen.backlog = 511
pm = static
pm.max_children = {children}
""")
        cmd = [php_fpm_program(), "-F", "-y", conf]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit("gateway: php-fpm did not start:\n" + self.log())
            time.sleep(0.05)

    def log(self):
        try:
            return open(os.path.join(self.dir, "fpm.log")).read()
        except OSError:
            return ""

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def config(backend, fpm):
    modules = "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
                      for m in ("proxy", "proxy_http", "proxy_fcgi"))
    http = f"ProxyPass http://127.0.0.1:{backend.port}/"
    php = f'ProxyPass "unix:{fpm.sock}|fcgi://localhost{fpm.script}"'
    verify = f"HrflowVerify on\n    HrflowSecret {SECRET}"
    return f"""LogLevel warn
{modules}
<Location /plain-http/>
    {http}
</Location>
<Location /verified-http/>
    {http}
    {verify}
</Location>
<Location /plain-php/>
    {php}
</Location>
<Location /verified-php/>
    {php}
    {verify}
</Location>
"""


def check_premises(server):
    """Each location answers the signed event with the application's 200;
    the verified ones refuse a wrong signature (else nothing is verified)."""
    headers = {"Content-Type": CONTENT_TYPE,
               "HTTP-HRFLOW-SIGNATURE": SIGNATURE}
    for kind in KINDS:
        want = b"ok" if kind == "php" else f"ok {len(BODY)}\n".encode()
        for mode in ("plain", "verified"):
            r, body = server.request("POST", f"/{mode}-{kind}/", BODY.encode(),
                                     headers)
            assert r.status == 200 and body == want, (mode, kind, r.status,
                                                      body)
        r, body = server.request("POST", f"/verified-{kind}/", BODY.encode(),
                                 dict(headers, **{"HTTP-HRFLOW-SIGNATURE":
                                                  "0" * 64}))
        assert r.status == 401, (kind, r.status, body)
    return 3 * len(KINDS)


def check_access_log(server, sent):
    """Every request wrk made has a 2xx line in the access log ("%>s %r
    HRFLOW_TYPE ..."), and every verified one its event's type: wrk counts
    only 4xx and 5xx answers as errors, and cannot tell whether a request
    was verified."""
    lines = server.new_log_lines("access.log")
    bad = [line for line in lines if not line.startswith("2")]
    unverified = [line for line in lines if " /verified-" in line
                  and line.split()[4] != EVENT["type"]]
    if len(lines) < sent or bad or unverified:
        sys.exit(f"gateway: access log: {len(lines)} lines for {sent} "
                 f"requests; not 2xx: {bad[:3]}; verified without the "
                 f"event's variables: {unverified[:3]}")
    print(f"access log: {len(lines)} requests (wrk counted {sent}), all 2xx, "
          "every verified one with its event's variables")


def wrk(url, seconds, conns, script):
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"^HRFLOW (.*)$", out, re.M)
    res = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    errors = {k: res[k] for k in ("connect", "read", "write", "status",
                                  "timeout") if res[k]}
    if errors:
        sys.exit(f"gateway: {url}: {errors} (wrk: non-2xx answers and "
                 f"socket errors must be 0)\n{out}")
    return res


def rate(rs):
    """Requests per second over the runs rs."""
    return sum(r["requests"] for r in rs) * 1e6 / sum(r["duration_us"]
                                                     for r in rs)


def cpu_us(rs, who):
    """CPU microseconds per request of who ("httpd", "app") over rs."""
    return sum(r[who] for r in rs) / TICK * 1e6 / sum(r["requests"]
                                                       for r in rs)


def row(loc, rs):
    return (f"{loc:<16}{rate(rs):>9.0f}"
            f"{median([r['p50_us'] for r in rs]) / 1000:>9.2f}"
            f"{median([r['p99_us'] for r in rs]) / 1000:>9.2f}"
            f"{cpu_us(rs, 'httpd'):>10.0f}{cpu_us(rs, 'app'):>8.0f}")


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def main():
    # Stopped (timeout, kill): the servers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    seconds, conns, rounds = args()
    scratch = make_scratch()
    backend = fpm = server = None
    try:
        backend = Backend()
        fpm = PhpFpm(scratch)
        server = Httpd("bench-gateway", scratch)
        server.write_config(config(backend, fpm))
        server.start()
        premises = check_premises(server)
        deadline = time.time() + 10     # their lines (401s among them)
        while premises > 0 and time.time() < deadline:
            premises -= len(server.new_log_lines("access.log"))
            time.sleep(0.05)
        parent = int(open(os.path.join(server.root, "httpd.pid")).read())
        script = os.path.join(server.root, "post.lua")
        with open(script, "w") as f:
            f.write(LUA)
        base = f"http://127.0.0.1:{server.port}"
        sent = 0
        for kind in KINDS:          # warm-up, not counted
            for mode in ("plain", "verified"):
                sent += wrk(f"{base}/{mode}-{kind}/", 1, conns,
                            script)["requests"]
        runs = {}
        app = {"http": lambda: cpu_ticks(backend.proc.pid),
               "php": lambda: family_ticks(fpm.proc.pid)}
        print(f"wrk -t2 -c{conns} -d{seconds}s -s post.lua, {rounds} rounds, "
              f"one Apache ({MPM} MPM); body: {len(BODY)}-byte {BODY_KIND}, "
              "body HMAC; CPU: user+system per request, of Apache's "
              "processes and of the application's")
        head = (f"{'location':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'httpd us':>10}{'app us':>8}")
        print(f"{'round':<6}" + head)
        for n in range(rounds):
            for kind in KINDS:
                modes = ("plain", "verified") if n % 2 == 0 else (
                    "verified", "plain")
                for mode in modes:
                    loc = f"/{mode}-{kind}/"
                    before = family_ticks(parent), app[kind]()
                    res = wrk(base + loc, seconds, conns, script)
                    res["httpd"] = family_ticks(parent) - before[0]
                    res["app"] = app[kind]() - before[1]
                    runs.setdefault(loc, []).append(res)
                    sent += res["requests"]
                    print(f"{n + 1:<6}" + row(loc, [res]), flush=True)
        server.stop()
        check_access_log(server, sent)
        print()
        print(head + "  (all rounds)")
        for loc, rs in runs.items():
            print(row(loc, rs))
        print()
        for kind in KINDS:
            plain, verified = runs[f"/plain-{kind}/"], runs[f"/verified-{kind}/"]
            ratio = rate(verified) / rate(plain)
            per_round = [rate([v]) / rate([p]) for p, v in zip(plain, verified)]
            print(f"ratio verified/plain, {kind:<4}: {ratio:.3f} "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in per_round)}; "
                  f"requirement >= 0.85: {'met' if ratio >= 0.85 else 'MISSED'}"
                  f"); CPU per request: Apache "
                  f"+{cpu_us(verified, 'httpd') - cpu_us(plain, 'httpd'):.0f}"
                  f" us, application "
                  f"+{cpu_us(verified, 'app') - cpu_us(plain, 'app'):.0f} us")
    finally:
        for part in (server, fpm, backend):
            if part:
                part.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
