"""The spool dispatcher's CPU time per event, with a small and a large
backlog: the cost per event must not grow with what waits (issue 10: at
most 1.3 times).

    tests/bench/dispatch_cpu.sh [SMALL] [LARGE] [CONCURRENCY] [SHAPES]

For each backlog (SMALL, default 1000, and LARGE, default 100000) and each
shape (SHAPES, default "one,distinct": every event on one order key; each
on a key of its own), the spool
is filled while no dispatcher runs (dispatch_cpu fill: the receivers' file
format, handler /bin/true), then a dispatcher starts (dispatch_cpu run,
hf_dispatch_run as Apache's child runs it) and drains it.  Its CPU time is
utime + stime from /proc/PID/stat (every thread of the dispatcher, none of
its handlers) when new/, retry/ and run/ are empty, divided by the events.
The small backlog runs several times (its total is a few clock ticks).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("HRFLOW_BUILD_DIR",
                       os.path.join(os.path.dirname(__file__), "../../build"))
TOOL = os.path.join(BUILD, "tests/bench/dispatch_cpu")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of pid (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after "(comm)": state is field 3, utime 14 and stime 15
    return (int(fields[11]) + int(fields[12])) / TICK


def pending(spool):
    return sum(len(os.listdir(os.path.join(spool, d)))
               for d in ("new", "retry", "run"))


def drain(scratch, count, shape, concurrency):
    """(CPU seconds, wall seconds) of one dispatcher draining count events."""
    spool = os.path.join(scratch, f"spool-{shape}-{count}")
    subprocess.run([TOOL, "fill", spool, str(count), shape], check=True)
    start = time.time()
    proc = subprocess.Popen([TOOL, "run", spool, str(concurrency)])
    try:
        cpu = 0.0
        while True:
            time.sleep(0.2 if count < 10000 else 1.0)
            if proc.poll() is not None:
                raise RuntimeError(f"the dispatcher exited ({proc.returncode})")
            cpu = cpu_seconds(proc.pid)
            if pending(spool) == 0:
                cpu = cpu_seconds(proc.pid)
                break
        wall = time.time() - start
        done = len(os.listdir(os.path.join(spool, "done")))
        failed = len([n for n in os.listdir(os.path.join(spool, "failed"))
                      if n.endswith(".json")])
        if done != count or failed:
            raise RuntimeError(f"{done} done and {failed} failed of {count}")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(spool, ignore_errors=True)
    return cpu, wall


def measure(scratch, count, shape, concurrency, runs):
    cpu = wall = 0.0
    for _ in range(runs):
        c, w = drain(scratch, count, shape, concurrency)
        cpu += c
        wall += w
    return cpu / (count * runs), wall / runs


def main():
    small = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    large = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    shapes = sys.argv[4].split(",") if len(sys.argv) > 4 else ["one",
                                                                "distinct"]
    if not os.access(TOOL, os.X_OK):
        sys.exit(f"{TOOL} is missing: make -C {BUILD} tests/bench/dispatch_cpu")
    scratch = tempfile.mkdtemp(prefix="hrflow-dispatch-cpu-")
    worst = 0.0
    try:
        print(f"dispatcher CPU per event, HrflowConcurrency {concurrency}, "
              f"handler /bin/true")
        print(f"{'order keys':<12}{'queued':>8}{'CPU ms/event':>14}"
              f"{'wall s':>9}")
        for shape in shapes:
            per = {}
            for count, runs in ((small, 5), (large, 1)):
                per[count], wall = measure(scratch, count, shape,
                                           concurrency, runs)
                print(f"{shape:<12}{count:>8}{per[count] * 1000:>14.4f}"
                      f"{wall:>9.1f}", flush=True)
            ratio = per[large] / per[small]
            worst = max(worst, ratio)
            print(f"{shape:<12}{'ratio':>8}{ratio:>14.2f}  "
                  f"({large} queued / {small} queued)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"worst ratio {worst:.2f} (at most 1.3 wanted)")
    return 0 if worst <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
