"""mod_hrflow.so puts only its module record in httpd's namespace."""
import subprocess

from conftest import MODULE


def test_module_exports_only_its_record():
    """The core's functions stay out of httpd's namespace, where another
    module's symbol of the same name could take their place."""
    r = subprocess.run(["nm", "-D", "--defined-only", MODULE],
                       capture_output=True, text=True, check=True)
    names = {line.split()[-1] for line in r.stdout.splitlines() if line}
    assert names == {"hrflow_module"}, sorted(names)
