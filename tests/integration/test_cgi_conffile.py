"""The CGI's config file as its parser reads it: what the fuzz target
tests/fuzz/fuzz_conffile.c found, kept as tests of hrflow.cgi --check."""
import os

from test_cgi import cgi_dir, tool, write_conf  # noqa: F401 (fixture)


def test_overlong_line_refused_not_split(cgi_dir):  # noqa: F811
    # A line over 16 KiB used to be cut at 16383 bytes, and the rest read
    # as a directive of its own.
    secret = "s" * (16383 - len("HrflowSecret "))
    conf = write_conf(cgi_dir, "HrflowSignature off\nHrflowSecret " + secret
                      + "HrflowSecret second\n")
    r = tool("--check", conf)
    assert r.returncode == 1
    assert conf + " line 2: longer than 16383 bytes" in r.stderr.decode()


def test_line_just_under_the_limit_read_whole(cgi_dir):  # noqa: F811
    secret = "s" * (16383 - len("HrflowSecret "))
    conf = write_conf(cgi_dir, "HrflowSignature off\r\nHrflowSecret "
                      + secret + "\n")
    r = tool("--check", conf)
    assert r.returncode == 0, r.stderr.decode()


def test_empty_signature_header_refused(cgi_dir):  # noqa: F811
    # An opening quote alone is an empty word: no header can be empty.
    conf = write_conf(cgi_dir, 'HrflowSecret s\nHrflowSignatureHeader "\n')
    r = tool("--check", conf)
    assert r.returncode == 1
    assert "line 2: HrflowSignatureHeader: " in r.stderr.decode()


def test_config_over_one_mib_refused(cgi_dir):  # noqa: F811
    conf = write_conf(cgi_dir, "HrflowSecret s\n" + "#\n" * (512 * 1024))
    r = tool("--check", conf)
    assert r.returncode == 1
    assert os.path.basename(conf) + " is over 1048576 bytes" in \
        r.stderr.decode()
