"""Requests per second of hrflow.cgi (verify+parse, no handler runs) against
a trivial C CGI that reads stdin and prints "ok", both under the same Apache
and mod_cgid, in one run, with wrk.

    tests/bench/cgi_throughput.sh [SECONDS] [CONNECTIONS]

HRFLOW_STATIC_CGI, when set, names a --enable-static-cgi build of the program
to measure as well.
"""
import os
import shutil
import subprocess

from benchlib import (SECRET, Httpd, args, assert_ignored, make_scratch,
                      signed_env, wrk)
from conftest import CGI, MODULES_DIR

HERE = os.path.dirname(os.path.abspath(__file__))


def install(scratch):
    """The programs and config, where the server's user reaches them."""
    d = os.path.join(scratch, "cgi")
    os.makedirs(d)
    subprocess.run(["cc", "-O2", "-o", os.path.join(d, "trivial.cgi"),
                    os.path.join(HERE, "trivial_cgi.c")], check=True)
    shutil.copy(CGI, os.path.join(d, "hrflow.cgi"))
    static = os.environ.get("HRFLOW_STATIC_CGI")
    if static:
        shutil.copy(static, os.path.join(d, "hrflow-static.cgi"))
    with open(os.path.join(d, "hrflow.conf"), "w") as f:
        f.write(f"HrflowSecret {SECRET}\nHrflowHandler job.* /bin/true\n")
    os.chmod(os.path.join(d, "hrflow.conf"), 0o600)
    if os.geteuid() == 0:
        shutil.chown(os.path.join(d, "hrflow.conf"), "www-data", "www-data")
    return d, bool(static)


def main():
    seconds, conns = args()
    scratch = make_scratch()
    d, static = install(scratch)
    server = Httpd("bench-cgi", scratch)
    server.write_config("LogLevel warn\n" + "".join(
        f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"
        for m in ("cgid", "alias", "env")) + f"""
ScriptAlias /trivial {d}/trivial.cgi
ScriptAlias /hook {d}/hrflow.cgi
ScriptAlias /hook-static {d}/hrflow-static.cgi
<LocationMatch "^/hook">
    SetEnv HRFLOW_CONFIG {d}/hrflow.conf
</LocationMatch>
""")
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        script, env = signed_env(server.root)
        for path in ["/hook"] + (["/hook-static"] if static else []):
            assert_ignored(server, path, env)
        trivial, t_bad = wrk(base + "/trivial", seconds, conns, script, env)
        hook, h_bad = wrk(base + "/hook", seconds, conns, script, env)
        print(f"wrk -t2 -c{conns} -d{seconds}s, one Apache (event MPM, mod_cgid)")
        print(f"trivial C CGI       {trivial:10.0f} req/s  non-2xx {t_bad}")
        print(f"hrflow.cgi          {hook:10.0f} req/s  non-2xx {h_bad}")
        print(f"ratio hrflow/trivial {hook / trivial:9.2f}")
        if static:
            st, s_bad = wrk(base + "/hook-static", seconds, conns, script, env)
            print(f"hrflow.cgi (static) {st:10.0f} req/s  non-2xx {s_bad}")
            print(f"ratio static/trivial {st / trivial:9.2f}")
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
