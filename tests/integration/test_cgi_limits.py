"""hrflow.cgi run directly, as a server runs it: what it writes to its
standard error (the server's error log) is bounded line by line."""
import os

from test_cgi import cgi_dir, run_cgi, write_conf  # noqa: F401 (fixture)

LOG_LINE_MAX = 8192     # README: "Log lines" of the CGI


def test_huge_output_line_is_cut_to_the_bound(scratch, cgi_dir):
    conf = write_conf(cgi_dir, "HrflowSignature optional\n"
                      f"HrflowHandler * {scratch}/handlers/shout.sh\n")
    fields, body, err, rc = run_cgi(conf, body=b'{"type":"a.b.c"}',
                                    ctype="application/json")
    assert fields["Status"] == "500 Internal Server Error"
    lines = err.encode().split(b"\n")
    assert max(len(x) + 1 for x in lines) <= LOG_LINE_MAX
    shouted = [x for x in lines if b"output: xxxx" in x]
    assert len(shouted) == 1
    assert shouted[0].endswith(b" more bytes not logged]")
    assert b"result=exit 1" in err.encode()


def test_control_characters_are_escaped(scratch, cgi_dir):
    conf = write_conf(cgi_dir, "HrflowSignature optional\n"
                      "HrflowHandler * /nonexistent/a\x1bb\n")
    fields, body, err, rc = run_cgi(conf, body=b'{"type":"a.b.c"}',
                                    ctype="application/json")
    assert "/nonexistent/a\\x1bb" in err
    assert "\x1b" not in err
