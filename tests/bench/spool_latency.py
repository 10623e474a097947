"""What durability costs a request: the 202 rate and the 99th percentile
latency of signed POSTs into a durable spool, alone and beside a program
that keeps a few hundred MB of the same file system dirty (written, never
synced), for one or more builds and MPMs.  Builds and cases alternate and
each run is repeated, so that a noisy machine weighs on all alike; the
table gives medians.

    tests/bench/spool_latency.sh [SECONDS] [CONNECTIONS] [REPEATS]

    HRFLOW_BENCH_BUILDS  "NAME=BUILD_DIR ..." (default: this tree's build/)
    HRFLOW_BENCH_MPMS    "event prefork" (default)
    HRFLOW_BENCH_DIRTY   MB the writer keeps dirty (default 500)

Example, a baseline built in /tmp/base against this tree:
    HRFLOW_BENCH_BUILDS="before=/tmp/base/build after=$PWD/build" \\
        tests/bench/spool_latency.sh 8 16 3
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def one_run(seconds, conns):
    """In a child process (HRFLOW_BUILD_DIR and HRFLOW_MPM set): one server,
    one wrk run; prints a JSON line."""
    from benchlib import EVENT, SECRET, Httpd, one_process
    from benchlib import signed_env
    from conftest import MPM

    scratch = os.environ["HRFLOW_BENCH_SCRATCH"]
    spool = os.path.join(scratch, "spool")
    server = Httpd("bench-latency", scratch)
    server.write_config(f"""LogLevel warn
MaxKeepAliveRequests 0
HrflowSpool {spool}
<Location /hook>
    SetHandler hrflow-webhook
    HrflowSecret {SECRET}
    HrflowHandler * /bin/true
</Location>
""")
    if MPM == "prefork":
        # Every connection its own process from the start.
        with open(server.conf) as f:
            text = f.read()
        with open(server.conf, "w") as f:
            f.write(text.replace("StartServers 4",
                                 f"StartServers {conns}")
                    .replace("MinSpareServers 4", f"MinSpareServers {conns}")
                    .replace("MaxSpareServers 16",
                             f"MaxSpareServers {conns + 4}"))
    else:
        one_process(server, 2 * conns)
    script, env = signed_env(scratch)
    server.start()
    try:
        r, body = server.request("POST", "/hook", json.dumps(EVENT).encode(),
                                 {"HTTP-HRFLOW-SIGNATURE":
                                  env["HRFLOW_SIG"]})
        assert r.status == 202, (r.status, body)
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s",
                              "--latency", "-s", script,
                              f"http://127.0.0.1:{server.port}/hook"],
                             capture_output=True, text=True, env=env,
                             check=True).stdout
    finally:
        server.stop()
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(bad.group(1)) if bad else 0
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    print(json.dumps({"rate": (total - bad) / seconds, "non2xx": bad,
                      "p99_ms": float(p99.group(1)) * scale}))


class Writer:
    """Rewrites a big file in place every second, never syncing it: the
    file system always holds that much unwritten data, as beside a busy
    program (in place, and only each second, so that the writer costs
    little CPU time on a small machine)."""

    def __init__(self, folder, mb):
        path = os.path.join(folder, "big")
        self.proc = subprocess.Popen(
            ["sh", "-c", "while :; do dd if=/dev/zero of=\"$0\" bs=1M "
             f"count={mb} conv=notrunc status=none; sleep 1; done", path],
            start_new_session=True)
        time.sleep(3)           # the first pass is written

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()


def measure(build, mpm, dirty, seconds, conns, scratch):
    env = dict(os.environ, HRFLOW_BUILD_DIR=build, HRFLOW_MPM=mpm,
               HRFLOW_BENCH_SCRATCH=scratch)
    writer = Writer(scratch, dirty) if dirty else None
    try:
        out = subprocess.run([sys.executable, __file__, "--one", str(seconds),
                              str(conns)], env=env, capture_output=True,
                             text=True)
    finally:
        if writer:
            writer.stop()
        shutil.rmtree(os.path.join(scratch, "spool"), ignore_errors=True)
        shutil.rmtree(os.path.join(scratch, "servers"), ignore_errors=True)
        for name in ("big",):
            try:
                os.unlink(os.path.join(scratch, name))
            except OSError:
                pass
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    from benchlib import args, make_scratch

    seconds, conns = args(8, 16)
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    builds = [b.split("=", 1) for b in os.environ.get(
        "HRFLOW_BENCH_BUILDS",
        "build=" + os.path.join(HERE, "..", "..", "build")).split()]
    mpms = os.environ.get("HRFLOW_BENCH_MPMS", "event prefork").split()
    dirty = int(os.environ.get("HRFLOW_BENCH_DIRTY", "500"))
    scratch = make_scratch(0o755)
    results = {}
    try:
        for rep in range(repeats):
            for mpm in mpms:
                for mb in (0, dirty):
                    for name, build in builds:
                        r = measure(os.path.abspath(build), mpm, mb, seconds,
                                    conns, scratch)
                        print(f"# run {rep + 1}: {name} {mpm} "
                              f"{'writer' if mb else 'alone'}: {r}",
                              flush=True)
                        results.setdefault((mpm, mb, name), []).append(r)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nwrk -t2 -c{conns} -d{seconds}s --latency, signed event, "
          f"handler /bin/true; medians of {repeats} runs; writer keeps "
          f"{dirty} MB dirty")
    print(f"{'MPM':8} {'case':7} {'build':10} {'202/s':>8} {'p99 ms':>9} "
          f"{'non-2xx':>8}")
    for mpm in mpms:
        for mb in (0, dirty):
            for name, _ in builds:
                rs = results[(mpm, mb, name)]
                print(f"{mpm:8} {'writer' if mb else 'alone':7} {name:10} "
                      f"{statistics.median(r['rate'] for r in rs):8.0f} "
                      f"{statistics.median(r['p99_ms'] for r in rs):9.1f} "
                      f"{sum(r['non2xx'] for r in rs):8d}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        one_run(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
