"""Requests per second of verify+parse (no handler runs) against a static file
served by the same Apache, in one run, with wrk.

    tests/bench/throughput.sh [SECONDS] [CONNECTIONS]
"""
import json
import os
import shutil

from benchlib import (SECRET, Httpd, args, assert_ignored, make_scratch,
                      signed_env, wrk)


def main():
    seconds, conns = args()
    scratch = make_scratch()
    with open(os.path.join(scratch, "htdocs", "static.json"), "w") as f:
        f.write(json.dumps({"status": "ok", "events": 1, "handled": 0,
                            "ignored": 1}))
    server = Httpd("bench", scratch)
    # /bin/true for job.* only: the profile event is verified, parsed,
    # flattened, routed, and ignored.
    server.write_config(f"""LogLevel warn
<Location /hook>
    SetHandler hrflow-webhook
    HrflowSecret {SECRET}
    HrflowHandler job.* /bin/true
</Location>
""")
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        script, env = signed_env(server.root)
        assert_ignored(server, "/hook", env)
        static, s_bad = wrk(base + "/static.json", seconds, conns)
        hook, h_bad = wrk(base + "/hook", seconds, conns, script, env)
        print(f"wrk -t2 -c{conns} -d{seconds}s, one Apache (event MPM)")
        print(f"static file        {static:10.0f} req/s  non-2xx {s_bad}")
        print(f"verify+parse       {hook:10.0f} req/s  non-2xx {h_bad}")
        print(f"ratio hook/static  {hook / static:10.2f}")
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
