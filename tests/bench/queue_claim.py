#!/usr/bin/python3
"""What a claim costs with 1k and with 100k events queued (issue 10: the
worker's cost per event must not grow with the backlog).

  HRFLOW_BUILD_DIR=build tests/bench/queue_claim.py URL

URL is a queue made with hrflowctl init (its events are deleted).  For each
backlog and key layout: the claim statement's time (EXPLAIN ANALYZE, median
of the last 5 of 7 in one session, rolled back), then hrflow-worker's own CPU time (threads, not its
handlers) per event over 700 events of /bin/true after 200 (the 1k
backlog stays between 800 and 100)."""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(os.environ.get("HRFLOW_BUILD_DIR", "build"))
TICK = os.sysconf("SC_CLK_TCK")
CLAIM = ("SELECT * FROM {n}_claim('bench', '{{/bin/true}}', 4, 7)")


def psql(url, sql):
    return subprocess.run(["psql", "-XAtq", url, "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def claim_ms(url, name):
    """In one session (the function compiled and planned once), seven
    claims in a transaction rolled back: the median of the last five."""
    sql = "BEGIN;\n" + (f"EXPLAIN (ANALYZE) {CLAIM.format(n=name)};\n" * 7) \
        + "ROLLBACK;\n"
    out = subprocess.run(["psql", "-XAtq", url], input=sql, check=True,
                         capture_output=True, text=True).stdout
    times = [float(t) for t in re.findall(r"Execution Time: ([\d.]+)", out)]
    return statistics.median(times[2:])


def done(url, name):
    return int(psql(url, f"SELECT count(*) FROM {name}_events "
                         "WHERE state = 'done'"))


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_cpu_per_event(url, name, events=700, warmup=200):
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "worker.conf")
        with open(conf, "w") as f:
            f.write(f"HrflowQueue {url}\nHrflowQueueName {name}\n"
                    "HrflowConcurrency 4\nHrflowHandler * /bin/true\n")
        w = subprocess.Popen([os.path.join(BUILD, "tools", "hrflow-worker"),
                              "--config", conf, "--quiet"])
        try:
            while done(url, name) < warmup:
                time.sleep(0.05)
            c0, d0, t0 = cpu(w.pid), done(url, name), time.time()
            while done(url, name) < d0 + events:
                time.sleep(0.05)
            c1, d1, t1 = cpu(w.pid), done(url, name), time.time()
        finally:
            w.terminate()
            w.wait()
    return (c1 - c0) / (d1 - d0) * 1000, (d1 - d0) / (t1 - t0)


def main():
    url = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "hrflow"
    load = os.path.join(BUILD, "tests", "bench", "queue_load")
    print("backlog  keys   claim ms  worker CPU ms/event  events/s")
    for keys in (0, 1000, 1):
        for backlog in (1000, 100000):
            psql(url, f"DELETE FROM {name}_events")
            psql(url, f"VACUUM ANALYZE {name}_events")
            subprocess.run([load, url, str(backlog), str(keys), "/bin/true",
                            name], check=True)
            psql(url, f"ANALYZE {name}_events")
            ms = claim_ms(url, name)
            per, rate = worker_cpu_per_event(url, name)
            print(f"{backlog:7d}  {keys or 'none':>5}  {ms:8.3f}  "
                  f"{per:19.3f}  {rate:8.0f}", flush=True)


if __name__ == "__main__":
    main()
