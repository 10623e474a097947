"""Fleet mode against durable mode, in one run on this machine (wrk):

- 202s per second, and p50/p99 of the accept latency, of the local spool
  (HrflowSpool) and of direct mode (HrflowQueue: each 202 a commit in
  PostgreSQL), with 1 and with 2 receivers; one hrflow-worker runs during
  the direct bursts, as the dispatcher does during the spool's;
- handler runs per second of 1, 2 and 4 hrflow-worker processes
  (HrflowConcurrency 4 each) draining a queue filled beforehand;
- in every run: 202s = events done, runs per event = 1, per-key overlaps
  = 0 (the handler logs a start and an end line; two starts of one key
  without the end between them are an overlap).

    tests/bench/queue_burst.sh [SECONDS] [CONNECTIONS]   (default 3 32)

Each request carries a new event (its message unique), on one of 64 keys
per wrk thread: per-key order holds events back as it would in use.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from benchlib import Httpd, args, make_scratch, one_process

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                "integration"))
from pgfixture import WORKER, Postgres, Worker, stop_postgres  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = 64
FILL = 4000             # events queued before the workers start
LUA = """local counter = 1
function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
end
function init(args)
    n = 0
    run = os.getenv("HRFLOW_RUN") or "r"
    limit = tonumber(os.getenv("HRFLOW_LIMIT") or "0")
end
function response(status, headers, body)
    if limit > 0 and n >= limit then
        wrk.thread:stop()
    end
end
function request()
    n = n + 1
    local key = run .. "-" .. id .. "-" .. (n %% %d)
    local body = '{"type":"profile.parsing.success","message":"' ..
        run .. "-" .. id .. "-" .. n .. '","profile":{"key":"' .. key .. '"}}'
    return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                      body)
end
""" % KEYS


def seconds_of(value, unit):
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def wrk(url, seconds, conns, script, run, limit=0):
    """One wrk run: answers/s, p50 and p99 in ms, socket errors."""
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s",
                          "--latency", "-s", script, url],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, HRFLOW_RUN=run,
                                  HRFLOW_LIMIT=str(limit))).stdout
    errors = re.search(r"Socket errors: .*", out)
    pct = dict((p, seconds_of(v, u) * 1000) for p, v, u in
               re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out,
                          re.M))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)",
                                   out).group(1)),
            "p50": pct.get("50", 0.0), "p99": pct.get("99", 0.0),
            "errors": errors.group(0) if errors else ""}


def answered_202(servers):
    """202s the servers answered, from their access logs once quiet: wrk
    stops counting at its deadline, while requests it had sent are still
    answered (and their events stored)."""
    def count():
        return sum(sum(1 for line in s.access_log().splitlines()
                       if line.startswith("202 ")) for s in servers)
    last, n = -1, count()
    while n != last:
        time.sleep(0.5)
        last, n = n, count()
    return n


def parallel_wrk(servers, seconds, conns, script, label, limit=0):
    """wrk against each server at once; the rates add up."""
    results = [None] * len(servers)

    def one(i):
        results[i] = wrk(f"http://127.0.0.1:{servers[i].port}/hook",
                         seconds, conns, script, f"{label}{i}", limit)
    threads = [threading.Thread(target=one, args=(i,))
               for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"rps": sum(r["rps"] for r in results),
            "ok": answered_202(servers),
            "p50": max(r["p50"] for r in results),
            "p99": max(r["p99"] for r in results),
            "errors": "; ".join(r["errors"] for r in results if r["errors"])}


def audit(log):
    """events done, the most runs of one event, per-key overlaps."""
    running, runs, done, overlaps = {}, {}, set(), 0
    try:
        text = open(log).read().splitlines()
    except OSError:
        text = []
    for line in text:
        what, key, message = line.split()
        if what == "s":
            if running.get(key):
                overlaps += 1
            running[key] = running.get(key, 0) + 1
            runs[message] = runs.get(message, 0) + 1
        else:
            running[key] -= 1
            done.add(message)
    return len(done), max(runs.values(), default=0), overlaps


def ended(log):
    """Handler runs that reached their end line."""
    try:
        with open(log, "rb") as f:
            return f.read().count(b"\ne ")
    except OSError:
        return 0


def settle(log, finished, limit=300):
    """Waits for finished() and for the log to stop growing."""
    start, last, since = time.time(), -1, time.time()
    while time.time() - start < limit:
        size = os.path.getsize(log) if os.path.exists(log) else 0
        if size != last:
            last, since = size, time.time()
        elif time.time() - since >= 1 and finished():
            return time.time() - start
        time.sleep(0.2)
    return time.time() - start


class Bench:
    def __init__(self, seconds, conns):
        self.seconds, self.conns = seconds, conns
        self.scratch = make_scratch(0o755)
        self.out = os.path.join(self.scratch, "out")
        os.mkdir(self.out)
        os.chmod(self.out, 0o777)
        os.makedirs(os.path.join(self.scratch, "handlers"))
        os.chmod(os.path.join(self.scratch, "handlers"), 0o755)
        self.handler = os.path.join(self.scratch, "handlers",
                                    "queue_handler.sh")
        shutil.copy(os.path.join(HERE, "queue_handler.sh"), self.handler)
        os.chmod(self.handler, 0o755)
        self.script = os.path.join(self.scratch, "post.lua")
        with open(self.script, "w") as f:
            f.write(LUA)
        self.pg = Postgres(self.scratch, "bench")
        self.pg.init()
        self.pg.start()
        self.pg.create_role()
        self.pg.init_schema()
        self.servers, self.workers = [], []
        self.runs = 0

    def log(self):
        self.runs += 1
        return os.path.join(self.out, f"runs-{self.runs}.log")

    def receiver(self, name, log, spool=None, queue=False):
        server = Httpd(name, self.scratch)
        lines = ["LogLevel warn", "MaxKeepAliveRequests 0"]
        if spool:
            lines.append(f"HrflowSpool {spool}")
        if queue:
            lines += [f"HrflowQueue {self.pg.url}",
                      f"HrflowQueuePasswordFile {self.pg.password_file}",
                      "HrflowWorker off"]
        lines += ["<Location /hook>", "    SetHandler hrflow-webhook",
                  "    HrflowSignature optional",
                  f"    HrflowHandler * {self.handler} {log}", "</Location>"]
        server.write_config("\n".join(lines) + "\n")
        one_process(server, 2 * self.conns)
        server.start()
        self.servers.append(server)
        return server

    def worker(self, name, log):
        w = Worker(self.scratch, name, self.pg, [f"* {self.handler} {log}"],
                   concurrency=4, retry=2, retry_delay=1).start()
        self.workers.append(w)
        return w

    def stop_all(self):
        for w in self.workers:
            w.stop()
        for s in self.servers:
            s.stop()
        self.workers, self.servers = [], []

    def unfinished(self):
        return int(self.pg.sql(f"SELECT count(*) FROM {self.pg.table()} "
                               "WHERE state <> 'done'"))

    def spool_mode(self, receivers):
        log = self.log()
        spools = [os.path.join(self.scratch, f"spool-{self.runs}-{i}")
                  for i in range(receivers)]
        servers = [self.receiver(f"spool-{self.runs}-{i}", log, spool=s)
                   for i, s in enumerate(spools)]
        r = parallel_wrk(servers, self.seconds, self.conns, self.script,
                         f"s{self.runs}-")

        def drained():
            return not any(os.listdir(os.path.join(s, d)) for s in spools
                           for d in ("new", "run", "retry"))
        settle(log, drained)
        self.stop_all()
        return dict(r, audit=audit(log))

    def direct_mode(self, receivers):
        log = self.log()
        self.pg.sql(f"TRUNCATE {self.pg.table()}")
        servers = [self.receiver(f"direct-{self.runs}-{i}", log, queue=True)
                   for i in range(receivers)]
        self.worker(f"w-{self.runs}", log)
        r = parallel_wrk(servers, self.seconds, self.conns, self.script,
                         f"d{self.runs}-")
        settle(log, lambda: self.unfinished() == 0)
        self.stop_all()
        return dict(r, audit=audit(log))

    def workers_drain(self, count):
        """Fills the queue with up to FILL events through a receiver while
        no worker runs (3 s of wrk, whose two threads stop sending after
        FILL / 2 answers each), then times COUNT workers draining it."""
        log = self.log()
        self.pg.sql(f"TRUNCATE {self.pg.table()}")
        server = self.receiver(f"fill-{self.runs}", log, queue=True)
        r = parallel_wrk([server], 3, self.conns, self.script,
                         f"f{self.runs}-", FILL // 2)
        self.stop_all()
        queued = self.unfinished()
        start = time.time()
        for i in range(count):
            self.worker(f"drain-{self.runs}-{i}", log)
        while ended(log) < queued and time.time() - start < 300:
            time.sleep(0.05)
        took = time.time() - start
        settle(log, lambda: True)
        self.stop_all()
        return dict(r, queued=queued, took=took, audit=audit(log))

    def close(self):
        self.stop_all()
        stop_postgres(self.pg)
        shutil.rmtree(self.scratch, ignore_errors=True)


def check(label, r):
    done, most, overlaps = r["audit"]
    ok = r["ok"] == done and most == 1 and overlaps == 0
    return (f"{r['ok']:>7d} {done:>7d} {most:>5d} {overlaps:>5d}  "
            + ("ok" if ok else "MISMATCH"))


def main():
    # Stopped (timeout, kill): the servers and workers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    seconds, conns = args(3, 32)
    if not os.access(WORKER, os.X_OK):
        sys.exit(f"{WORKER} is not built")
    bench = Bench(seconds, conns)
    try:
        accept = [("spool, 1 receiver", bench.spool_mode(1)),
                  ("spool, 2 receivers", bench.spool_mode(2)),
                  ("direct, 1 receiver", bench.direct_mode(1)),
                  ("direct, 2 receivers", bench.direct_mode(2))]
        drains = [(n, bench.workers_drain(n)) for n in (1, 2, 4)]
    finally:
        bench.close()
    print(f"wrk -t2 -c{conns} -d{seconds}s per receiver, unsigned JSON "
          f"event, {KEYS} keys per wrk thread; handler: two appended lines")
    print(f"{'accepting':22}{'202/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'202s':>8}{'done':>8}{'runs':>6}{'ovl':>6}")
    for label, r in accept:
        print(f"{label:22}{r['rps']:8.0f}{r['p50']:8.2f}{r['p99']:8.2f} "
              + check(label, r) + (f"  {r['errors']}" if r["errors"] else ""))
    print(f"{'draining a backlog':22}{'runs/s':>8}{'queued':>8}{'s':>8}"
          f"{'202s':>8}{'done':>8}{'runs':>6}{'ovl':>6}")
    for n, r in drains:
        label = f"{n} worker{'s' if n > 1 else ''} x 4"
        print(f"{label:22}{r['queued'] / r['took']:8.0f}{r['queued']:8d}"
              f"{r['took']:8.2f} " + check(label, r))
    spool1, direct1 = accept[0][1]["rps"], accept[2][1]["rps"]
    spool2, direct2 = accept[1][1]["rps"], accept[3][1]["rps"]
    print(f"direct/spool 202/s: 1 receiver {direct1 / spool1:.2f}, "
          f"2 receivers {direct2 / spool2:.2f}")


if __name__ == "__main__":
    main()
