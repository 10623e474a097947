"""HrflowHandler's arguments through httpd's TAKE_ARGV, which stops at 64
words and drops the rest without a word: the module must refuse such a
line rather than run the handler with fewer arguments than written."""
from conftest import Httpd


def configtest(scratch, name, text):
    server = Httpd("args-" + name, scratch)
    server.write_config(text)
    return server.apachectl("-t")


def handler_line(scratch, nargs):
    args = " ".join(f"a{i}" for i in range(nargs))
    return (f"<Location /hook>\nSetHandler hrflow-webhook\nHrflowSecret s\n"
            f"HrflowHandler * {scratch}/handlers/fail.sh {args}\n"
            "</Location>\n")


def test_handler_with_too_many_arguments_is_refused(scratch):
    # 2 + 70 words: httpd hands over 64 of them.
    r = configtest(scratch, "many", handler_line(scratch, 70))
    assert r.returncode != 0, r.stderr
    assert "HrflowHandler" in r.stderr and "at most" in r.stderr, r.stderr


def test_handler_with_many_arguments_below_the_limit_passes(scratch):
    r = configtest(scratch, "some", handler_line(scratch, 61))
    assert r.returncode == 0, r.stderr
