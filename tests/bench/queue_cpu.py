"""The worker's CPU per event with a small and a large backlog: its cost
must not grow with the number of events queued (the spool dispatcher's
did: 0.24 ms per event with 3k queued, 0.39 ms with 12k).

For each backlog the queue is filled with SQL (copies of one event that a
receiver accepted, spread over KEYS order keys, so that per-key order
applies as in use), one hrflow-worker (HrflowConcurrency 4, handler
/bin/true) is started, and the utime + stime of the worker and of its
PostgreSQL backends (where the claims' cost lives) are read from /proc
over the first EVENTS events it finishes.

    tests/bench/queue_cpu.sh [EVENTS] [BACKLOG...]   (default 1000 1000 100000)
"""
import os
import shutil
import sys
import time

from benchlib import Httpd, make_scratch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                "integration"))
from pgfixture import WORKER, Postgres, Worker, stop_postgres  # noqa: E402

KEYS = 100
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class Bench:
    def __init__(self):
        self.scratch = make_scratch(0o755)
        self.pg = Postgres(self.scratch, "cpu")
        self.pg.init()
        self.pg.start()
        self.pg.create_role()
        self.pg.init_schema()
        self.table = self.pg.table()
        # One event as a receiver stores it: the template of the fill.
        server = Httpd("cpu-receiver", self.scratch)
        server.write_config(
            f"HrflowQueue {self.pg.url}\n"
            f"HrflowQueuePasswordFile {self.pg.password_file}\n"
            "HrflowWorker off\n<Location /hook>\n"
            "    SetHandler hrflow-webhook\n    HrflowSignature optional\n"
            "    HrflowHandler * /bin/true\n</Location>\n")
        server.start()
        try:
            r, body = server.request(
                "POST", "/hook", b'{"type":"profile.parsing.success",'
                b'"profile":{"key":"template-key"}}',
                {"Content-Type": "application/json"})
            assert r.status == 202, body
        finally:
            server.stop()
        self.pg.sql(f"CREATE TABLE template AS SELECT * FROM {self.table}")

    def fill(self, n):
        """n queued events on KEYS keys, the first of each key its head."""
        self.pg.sql(f"TRUNCATE {self.table}")
        self.pg.sql(
            f"INSERT INTO {self.table} (order_key, program, timeout, "
            "envelope, head) "
            f"SELECT 'key-' || (i % {KEYS}), t.program, t.timeout, "
            "convert_to(replace(convert_from(t.envelope, 'UTF8'), "
            f"'template-key', 'key-' || (i % {KEYS})), 'UTF8'), "
            f"i <= {KEYS} FROM template t, generate_series(1, {n}) i "
            "ORDER BY i")
        self.pg.sql(f"VACUUM ANALYZE {self.table}")

    def done(self):
        return int(self.pg.sql(f"SELECT count(*) FROM {self.table} "
                               "WHERE state = 'done'"))

    def backends(self):
        return [int(x) for x in self.pg.sql(
            "SELECT pid FROM pg_stat_activity WHERE usename = "
            f"'{self.pg.user}'").split()]

    def measure(self, backlog, events):
        self.fill(backlog)
        w = Worker(self.scratch, f"cpu-{backlog}", self.pg,
                   ["* /bin/true"], concurrency=4).start()
        try:
            start = time.time()
            while not self.backends() and time.time() - start < 10:
                time.sleep(0.05)
            pids = [w.pid] + self.backends()
            before = {p: cpu_seconds(p) for p in pids}
            t0 = time.time()
            while self.done() < events and time.time() - t0 < 600:
                time.sleep(0.2)
            took = time.time() - t0
            used = {p: cpu_seconds(p) - before[p] for p in pids}
            finished = self.done()
        finally:
            w.stop()
        return {"backlog": backlog, "events": finished, "took": took,
                "worker": used[w.pid],
                "db": sum(v for p, v in used.items() if p != w.pid)}

    def close(self):
        stop_postgres(self.pg)
        shutil.rmtree(self.scratch, ignore_errors=True)


def main():
    if not os.access(WORKER, os.X_OK):
        sys.exit(f"{WORKER} is not built")
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    backlogs = [int(x) for x in sys.argv[2:]] or [1000, 100000]
    bench = Bench()
    try:
        results = [bench.measure(b, events) for b in backlogs]
    finally:
        bench.close()
    print(f"one hrflow-worker, HrflowConcurrency 4, handler /bin/true, "
          f"{KEYS} keys; CPU over the first {events} events done")
    print(f"{'queued':>8}{'events':>8}{'s':>8}{'worker ms/ev':>14}"
          f"{'backend ms/ev':>15}{'runs/s':>9}")
    for r in results:
        n = max(r["events"], 1)
        print(f"{r['backlog']:8d}{r['events']:8d}{r['took']:8.2f}"
              f"{1000 * r['worker'] / n:14.3f}{1000 * r['db'] / n:15.3f}"
              f"{r['events'] / r['took']:9.0f}")
    first, last = results[0], results[-1]
    ratio = ((last["worker"] + last["db"]) / max(last["events"], 1)) / \
        max((first["worker"] + first["db"]) / max(first["events"], 1), 1e-9)
    print(f"CPU per event (worker + backend), {last['backlog']} queued "
          f"against {first['backlog']}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
