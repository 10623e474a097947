"""hrflow-worker's CPU per event with a small and a large backlog: its
cost must not grow with the number of events queued (issue 10: within
1.3 times from 1k to 100k; the spool dispatcher's own measurement is
dispatch_cpu.py).

For each backlog the queue is filled by SQL (copies of one event a
receiver stored, on KEYS order keys, the first of each its key's head),
one worker is started (HrflowConcurrency 4, the handler appends a line),
and the utime + stime of the worker and of its PostgreSQL backend (where
the claims' cost lives) are read from /proc from its first finished event
over the next EVENTS.

    tests/bench/queue_cpu.sh [EVENTS] [KEYS] [BACKLOG...]
                                        (default 1000 1 1000 100000)
"""
import os
import shutil
import signal
import sys
import time

from benchlib import Httpd, make_scratch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                "integration"))
from pgfixture import WORKER, Postgres, Worker, stop_postgres  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")
TEMPLATE = (b'{"type":"profile.parsing.success",'
            b'"profile":{"key":"template-key"}}')


def cpu_seconds(pid):
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def measure(pids, log, events, backlog, limit=600):
    """CPU seconds of pids() from the first line in log over the next
    events lines (or to the end of the backlog): (events, seconds, CPU of
    the first pid, CPU of the others)."""
    start = time.time()
    while count_lines(log) == 0 and time.time() - start < limit:
        time.sleep(0.01)
    first = count_lines(log)
    watched = pids()
    before = {p: cpu_seconds(p) for p in watched}
    t0 = time.time()
    target = min(first + events, backlog)
    while count_lines(log) < target and time.time() - t0 < limit:
        time.sleep(0.05)
    took = time.time() - t0
    cpu = [cpu_seconds(p) - before[p] for p in watched]
    return count_lines(log) - first, took, cpu[0], sum(cpu[1:])


class Bench:
    def __init__(self, keys):
        self.keys = keys
        self.scratch = make_scratch(0o755)
        self.out = os.path.join(self.scratch, "out")
        os.mkdir(self.out)
        os.chmod(self.out, 0o777)
        self.handler = os.path.join(self.scratch, "append.sh")
        shutil.copy(os.path.join(HERE, "append.sh"), self.handler)
        os.chmod(self.handler, 0o755)
        self.pg = None
        self.runs = 0

    def log(self):
        self.runs += 1
        return os.path.join(self.out, f"ran-{self.runs}.log")

    # -- PostgreSQL and one worker --------------------------------------------
    def queue_template(self):
        self.pg = Postgres(self.scratch, "cpu")
        self.pg.init()
        self.pg.start()
        self.pg.create_role()
        self.pg.init_schema()
        self.table = self.pg.table()
        self.queue_log = os.path.join(self.out, "queue.log")
        server = Httpd("cpu-receiver", self.scratch)
        server.write_config(
            f"HrflowQueue {self.pg.url}\n"
            f"HrflowQueuePasswordFile {self.pg.password_file}\n"
            "HrflowWorker off\n<Location /hook>\n"
            "    SetHandler hrflow-webhook\n    HrflowSignature optional\n"
            f"    HrflowHandler * {self.handler} {self.queue_log}\n"
            "</Location>\n")
        server.start()
        try:
            r, body = server.request("POST", "/hook", TEMPLATE,
                                     {"Content-Type": "application/json"})
            assert r.status == 202, body
        finally:
            server.stop()
        self.pg.sql(f"CREATE TABLE template AS SELECT * FROM {self.table}")

    def queue_fill(self, n):
        self.pg.sql(f"TRUNCATE {self.table}")
        self.pg.sql(
            f"INSERT INTO {self.table} (order_key, program, timeout, "
            "envelope, head) "
            f"SELECT 'profile:key-' || (i % {self.keys}), t.program, "
            "t.timeout, convert_to(replace(convert_from(t.envelope, 'UTF8'),"
            f" 'template-key', 'key-' || (i % {self.keys})), 'UTF8'), "
            f"i <= {self.keys} FROM template t, generate_series(1, {n}) i "
            "ORDER BY i")
        self.pg.sql(f"VACUUM ANALYZE {self.table}")

    def queue_run(self, backlog, events):
        self.queue_fill(backlog)
        if os.path.exists(self.queue_log):
            os.unlink(self.queue_log)
        w = Worker(self.scratch, f"cpu-{backlog}", self.pg,
                   [f"* {self.handler} {self.queue_log}"],
                   concurrency=4).start()

        def pids():
            return [w.pid] + [int(x) for x in self.pg.sql(
                "SELECT pid FROM pg_stat_activity WHERE usename = "
                f"'{self.pg.user}'").split()]
        try:
            return measure(pids, self.queue_log, events, backlog)
        finally:
            w.stop()

    def close(self):
        if self.pg:
            stop_postgres(self.pg)
        shutil.rmtree(self.scratch, ignore_errors=True)


def main():
    # Stopped (timeout, kill): the servers and workers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    keys = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    backlogs = [int(x) for x in sys.argv[3:]] or [1000, 100000]
    if not os.access(WORKER, os.X_OK):
        sys.exit(f"{WORKER} is not built")
    bench = Bench(keys)
    results = []
    try:
        bench.queue_template()
        for b in backlogs:
            results.append((b, bench.queue_run(b, events)))
    finally:
        bench.close()
    print(f"HrflowConcurrency 4, handler appends a line, {keys} order "
          f"key(s); CPU over {events} events after the first")
    print(f"{'queued':>8}{'events':>8}{'s':>8}{'runs/s':>8}"
          f"{'worker ms/ev':>14}{'backend ms/ev':>15}{'total':>8}")
    per = []
    for backlog, (n, took, worker, db) in results:
        n = max(n, 1)
        per.append(1000 * (worker + db) / n)
        print(f"{backlog:8d}{n:8d}{took:8.2f}{n / took:8.0f}"
              f"{1000 * worker / n:14.3f}{1000 * db / n:15.3f}{per[-1]:8.3f}")
    if len(per) > 1 and per[0] > 0:
        print(f"CPU per event (worker + its backend), {backlogs[-1]} queued "
              f"against {backlogs[0]}: {per[-1] / per[0]:.2f}x")


if __name__ == "__main__":
    main()
