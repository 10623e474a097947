"""Memory of one 1 MiB request in gateway mode: what HrflowVerify's reading,
verifying and replaying of the body costs a server process, against the
same body proxied without it.

    /usr/bin/python3 tests/bench/gateway_memory.py [REQUESTS]

One Apache, prefork with a single child (so that the child's counters are
the request's), mod_proxy_http to trivial_backend, /plain-http/ and
/verified-http/ (HrflowVerify on, default HrflowMaxBody: 1 MiB).  The
bodies are JSON events of exactly 1 MiB, signed with the body's HMAC, sent
with Content-Length and chunked (16 KiB chunks):

  text     a profile whose "text" field is most of it (one long string)
  objects  a profile with ~8,700 experiences of two short strings each
           (within the JSON caps: 10,000 containers, 100,000 values)

For each body, location and framing, a fresh server, a few small requests
first (first-use allocations are not the body's), then REQUESTS (default
3) 1 MiB requests, each measured so:

    echo 5 > /proc/CHILD/clear_refs    (the peak, VmHWM, restarts at VmRSS)
    VmRSS before, the request, VmHWM after: the peak increase

A request's later repetitions may reuse memory the first one left in the
child (APR keeps up to MaxMemFree, 2 MiB, of free blocks per allocator;
glibc keeps freed heap), so the first is the cost; "max" is over all.
The backend's answer ("ok N", "ok N chunked") shows what reached it.
"""
import http.client
import itertools
import json
import os
import shutil
import signal
import sys
import time

os.environ["HRFLOW_MPM"] = "prefork"   # before conftest reads it

from benchlib import SECRET, Httpd, make_scratch  # noqa: E402
from conftest import MODULES_DIR  # noqa: E402
from gateway import Backend  # noqa: E402
from hrflow_sign import body_signature  # noqa: E402

MIB = 1 << 20
CHUNK = 16 << 10


def objects_event(size):
    """A profile event of exactly size bytes of JSON, most of it in many
    small objects, as a profile's experiences."""
    head = {"type": "profile.parsing.success", "origin": "api",
            "message": "", "profile": {"key": "d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d",
                                        "experiences": []}}
    one = {"title": "Senior C engineer 00000", "text": "x" * 70}
    room = size - len(json.dumps(head))
    n = room // (len(json.dumps(one)) + 2)
    head["profile"]["experiences"] = [
        {"title": "Senior C engineer %05d" % i, "text": "x" * 70}
        for i in range(n)]
    head["message"] = "m" * (size - len(json.dumps(head)))
    body = json.dumps(head).encode()
    assert len(body) == size, len(body)
    return body


def event(size):
    """A profile event of exactly size bytes of JSON, most of it one long
    string."""
    words = ("Senior C engineer, Apache httpd modules, APR, OpenSSL; "
             "ten years of network services and their performance. ")
    head = {"type": "profile.parsing.success", "origin": "api",
            "message": "profile parsing succeed",
            "profile": {"key": "d82a7fd1b7ba47ee9a5ad7c8c3c8cb4d",
                        "source": {"key": "d90a8b6ee5d2ef4e1c8a6de0f32bfa0d"},
                        "text": ""}}
    room = size - len(json.dumps(head))
    head["profile"]["text"] = (words * (room // len(words) + 1))[:room]
    body = json.dumps(head).encode()
    assert len(body) == size, len(body)
    return body


def status(pid):
    """VmRSS and VmHWM of pid, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1]) * 1024
    return out


def only_child(server):
    parent = int(open(os.path.join(server.root, "httpd.pid")).read())
    deadline = time.time() + 10
    while time.time() < deadline:
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == parent:
                    kids.append(int(d))
        if len(kids) == 1:
            return kids[0]
        time.sleep(0.1)
    raise RuntimeError(f"prefork children of {parent}: {kids}")


def post(port, path, body, chunked):
    """The backend's answer to one signed POST of body."""
    headers = {"Content-Type": "application/json",
               "HTTP-HRFLOW-SIGNATURE": body_signature(SECRET, body)}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        view = memoryview(body)
        payload = [view[i:i + CHUNK] for i in range(0, len(body), CHUNK)]
    else:
        payload = body
    conn.request("POST", path, body=payload, headers=headers,
                 encode_chunked=chunked)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {data[:200]!r}")
    return data.decode().strip()


def measure(scratch, backend, path, chunked, body, requests):
    server = Httpd("bench-gateway-memory", scratch)
    server.write_config(f"""LogLevel warn
LoadModule proxy_module {MODULES_DIR}/mod_proxy.so
LoadModule proxy_http_module {MODULES_DIR}/mod_proxy_http.so
<Location /plain-http/>
    ProxyPass http://127.0.0.1:{backend.port}/
</Location>
<Location /verified-http/>
    ProxyPass http://127.0.0.1:{backend.port}/
    HrflowVerify on
    HrflowSecret {SECRET}
</Location>
""")
    with open(server.conf) as f:
        text = f.read()
    for old, new in (("StartServers 4", "StartServers 1"),
                     ("MinSpareServers 4", "MinSpareServers 1"),
                     ("MaxSpareServers 16", "MaxSpareServers 1"),
                     ("ServerLimit 50", "ServerLimit 1"),
                     ("MaxRequestWorkers 50", "MaxRequestWorkers 1")):
        assert old in text, old
        text = text.replace(old, new)
    with open(server.conf, "w") as f:
        f.write(text)
    server.start()
    try:
        child = only_child(server)
        small = event(4096)
        for _ in range(3):
            for c in (False, True):
                post(server.port, path, small, c)
        rows = []
        for _ in range(requests):
            with open(f"/proc/{child}/clear_refs", "w") as f:
                f.write("5")
            before = status(child)["VmRSS"]
            start = time.monotonic()
            answer = post(server.port, path, body, chunked)
            elapsed = time.monotonic() - start
            after = status(child)
            rows.append((after["VmHWM"] - before, before, after["VmRSS"],
                         elapsed, answer))
        assert only_child(server) == child, "the child changed"
        return rows
    finally:
        server.stop()


def main():
    # Stopped (timeout, kill): the servers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    bodies = {"text": event(MIB), "objects": objects_event(MIB)}
    scratch = make_scratch()
    backend = None
    try:
        backend = Backend()
        print(f"prefork, one child; {MIB}-byte JSON events, body HMAC; "
              f"peak = VmHWM after - VmRSS before, per request")
        print(f"{'body':<8}{'location':<16}{'framing':<16}{'first MiB':>10}"
              f"{'x body':>8}{'max MiB':>9}{'x body':>8}{'RSS MiB':>9}"
              f"{'ms':>7}  backend got")
        for (name, body), path, chunked in itertools.product(
                bodies.items(), ("/plain-http/", "/verified-http/"),
                (False, True)):
            rows = measure(scratch, backend, path, chunked, body,
                           requests)
            first, peak = rows[0][0], max(r[0] for r in rows)
            print(f"{name:<8}{path:<16}"
                  f"{'chunked' if chunked else 'Content-Length':<16}"
                  f"{first / MIB:>10.2f}{first / len(body):>8.2f}"
                  f"{peak / MIB:>9.2f}{peak / len(body):>8.2f}"
                  f"{rows[0][1] / MIB:>9.1f}{rows[0][3] * 1000:>7.1f}"
                  f"  {rows[0][4]}")
            print(f"{'':<40}each: " + ", ".join(
                f"{r[0] / MIB:.2f}" for r in rows) + " MiB; RSS after: "
                + ", ".join(f"{r[2] / MIB:.1f}" for r in rows) + " MiB")
    finally:
        if backend:
            backend.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
