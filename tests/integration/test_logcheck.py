"""The checks the suite applies after every test (conftest): they must
catch what they are there for, and let through what a test declares."""
import os
import subprocess

import pytest

import conftest
from conftest import (CGI, MODULE, SANITIZE, SECRETS, Httpd, line_problem,
                      log_problems)

STAMP = "[Sun Nov 29 03:48:33.761689 2026]"


@pytest.mark.parametrize("line,problem", [
    (f"{STAMP} [core:notice] [pid 1:tid 1] AH00052: child pid 7 exit signal "
     "Segmentation fault (11)", "a crash or sanitizer report"),
    ("==12==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x60",
     "a crash or sanitizer report"),
    ("../mod_hrflow/hf_json.c:9:5: runtime error: signed integer overflow",
     "a crash or sanitizer report"),
    ("free(): double free detected in tcache 2", "a crash or sanitizer report"),
    (f"{STAMP} [hrflow:error] [pid 1:tid 2] spool: cannot write x",
     "an unexpected error line"),
    (f"{STAMP} [core:crit] [pid 1:tid 2] AH00000: something",
     "an unexpected error line"),
    ("hrflow.cgi: [error] event 8c86bc7fdcfc output: boom",
     "an unexpected error line"),
    ("a line of a child's own output", "an unexpected error line"),
    (f"{STAMP} [hrflow:info] [pid 1:tid 2] secret is {SECRETS[1]}",
     "a secret in the log"),
    (f"{STAMP} [hrflow:info] [pid 1:tid 2] refused with 401: invalid", None),
    (f"{STAMP} [hrflow:warn] [pid 1:tid 2] HrflowSignature off", None),
    ("hrflow.cgi: [info] refused with 400: invalid_json", None),
    (f"{STAMP} [mpm_event:notice] [pid 1:tid 1] AH00489: configured", None),
])
def test_line_classification(line, problem):
    assert line_problem(line, []) == problem


def test_declared_lines_pass_but_secrets_never():
    error = f"{STAMP} [hrflow:error] [pid 1:tid 2] spool: cannot write x"
    assert line_problem(error, [r"spool: cannot write"]) is None
    assert line_problem(error, [r"something else"]) is not None
    leak = f"{STAMP} [hrflow:error] [pid 1:tid 2] {SECRETS[0]}"
    assert line_problem(leak, [r".*"]) == "a secret in the log"


def test_registered_secret_is_caught():
    conftest.register_secret("a-test-secret-Kx7")
    line = f"{STAMP} [hrflow:info] [pid 1:tid 2] a-test-secret-Kx7"
    assert line_problem(line, []) == "a secret in the log"


def test_only_new_whole_lines_are_read(scratch):
    server = Httpd("logcheck", scratch)
    log = os.path.join(server.root, "error.log")
    conftest.WATCHED[server.root] = server
    try:
        with open(log, "w") as f:
            f.write(f"{STAMP} [hrflow:error] [pid 1:tid 2] first\n"
                    f"{STAMP} [hrflow:error] [pid 1:tid 2] sec")
        problems = log_problems([])
        assert len(problems) == 1 and "first" in problems[0]
        with open(log, "a") as f:
            f.write("ond\n")
        problems = log_problems([])
        assert len(problems) == 1 and "second" in problems[0]
        assert log_problems([]) == []
    finally:
        del conftest.WATCHED[server.root]


@pytest.mark.skipif(not SANITIZE, reason="only for the sanitizer run")
@pytest.mark.parametrize("program", [MODULE, CGI])
def test_sanitizer_run_tests_an_instrumented_build(program):
    symbols = subprocess.run(["nm", "-D", program], capture_output=True,
                             text=True).stdout
    assert "__asan_report" in symbols and "__ubsan_handle" in symbols
