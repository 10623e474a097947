"""Peak memory and time of one request with a large JSON body.

Runs hrflow.cgi as a web server would (CGI/1.1 variables, the body on
standard input), one process per request, so that the process's peak
resident size is the request's cost.  Bodies of about 1 MiB:

  leaves   one event of ~500k leaves, its handler /bin/true (over the
           cap of JSON values: refused before any tree)
  ignored  100 events of ~5k leaves each, no handler for their type
           (refused the same way)
  capped   one event of as many leaves as the caps allow
  mixed    one event at both caps: 10k empty objects, the rest numbers
  members  one event at the cap of values: ~100k members of one object
  empties  "[{},{},...]", ~350k empty objects (a batch over MaxEvents)
  objects  one event of ~350k empty objects (over the container cap)
  small    one small event (the process's own floor)

  /usr/bin/python3 tests/bench/json_memory.py [CGI ...]

Each CGI given (default: $HRFLOW_BUILD_DIR/cgi/hrflow.cgi) is measured, so
two builds can be compared side by side.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("HRFLOW_BUILD_DIR",
                       os.path.join(HERE, "..", "..", "build"))
RUNS = 3


def bodies():
    leaves = 499_000
    one = ('{"type":"profile.parsing.success","x":['
           + ",".join("0" * leaves) + "]}").encode()
    per = 4_990
    event = ('{"type":"job.parsing.success","x":['
             + ",".join("0" * per) + "]}")
    batch = ("[" + ",".join([event] * 100) + "]").encode()
    small = b'{"type":"profile.parsing.success","profile":{"key":"k"}}'
    values, containers = 100_000, 10_000       # HF_JSON_MAX_VALUES, ...
    capped = ('{"type":"profile.parsing.success","x":['
              + ",".join("0" * (values - 3)) + "]}").encode()
    mixed = ('{"type":"profile.parsing.success","x":['
             + ",".join(["{}"] * (containers - 2)
                        + ["0"] * (values - containers - 1)) + "]}").encode()
    members = ('{"type":"profile.parsing.success","x":{'
               + ",".join('"%x":0' % i for i in range(values - 3)) + "}}"
               ).encode()
    empties = ("[" + ",".join(["{}"] * 349_000) + "]").encode()
    objects = ('{"type":"profile.parsing.success","x":['
               + ",".join(["{}"] * 349_000) + "]}").encode()
    return {"leaves": one, "ignored": batch, "capped": capped,
            "mixed": mixed, "members": members, "empties": empties, "objects": objects,
            "small": small}


def run_once(cgi, conf, body):
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST",
           "CONTENT_TYPE": "application/json",
           "CONTENT_LENGTH": str(len(body)), "HRFLOW_CONFIG": conf,
           "SCRIPT_FILENAME": cgi, "PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryFile() as stdin:
        stdin.write(body)
        stdin.seek(0)
        start = time.monotonic()
        p = subprocess.Popen([cgi], stdin=stdin, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = status
        elapsed = time.monotonic() - start
    head = out.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode(errors="replace")
    return usage.ru_maxrss, elapsed, head


def main():
    cgis = sys.argv[1:] or [os.path.join(BUILD, "cgi", "hrflow.cgi")]
    work = tempfile.mkdtemp(prefix="hrflow-jsonmem-")
    conf = os.path.join(work, "hrflow.conf")
    with open(conf, "w") as f:
        f.write("HrflowSignature off\nHrflowHandler profile.* /bin/true\n"
                "HrflowMaxBody 2097152\n")
    os.chmod(conf, 0o600)
    print(f"{'cgi':<40} {'body':<8} {'bytes':>8} {'peak RSS':>10} "
          f"{'time':>7}  answer")
    for cgi in cgis:
        for name, body in bodies().items():
            worst_rss, worst_t, head = 0, 0.0, ""
            for _ in range(RUNS):
                rss, t, head = run_once(cgi, conf, body)
                worst_rss, worst_t = max(worst_rss, rss), max(worst_t, t)
            print(f"{cgi[-40:]:<40} {name:<8} {len(body):>8} "
                  f"{worst_rss / 1024:>7.1f} MB {worst_t:>6.3f}s  {head}")
    os.unlink(conf)
    os.rmdir(work)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    main()
