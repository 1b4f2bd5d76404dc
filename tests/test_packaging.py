"""The package's version and what it ships beside its modules."""
import ast
import importlib.metadata
import os
import platform
import subprocess
import sys

import pytest

import tornado_cgen
from tornado_cgen import _version

import conftest

PACKAGE_DIR = os.path.dirname(tornado_cgen.__file__)

# The public modules, each with its stub (or inline annotations).
PUBLIC_MODULES = ["__init__", "_core", "gen", "concurrent", "ioloop", "loop",
                  "testing", "log", "pytest_plugin"]


def _version_output(hide_tornado):
    code = ("import sys\n"
            "%s"
            "from tornado_cgen.__main__ import main\n"
            "sys.exit(main(['--version']))\n" % (
                "sys.modules['tornado'] = None\n" if hide_tornado else ""))
    return subprocess.run([sys.executable, "-c", code],
                          env=conftest._child_env(False),
                          capture_output=True, text=True, timeout=120)


def test_version_is_the_one_in_version_module():
    assert tornado_cgen.__version__ == _version.__version__
    assert all(part.isdigit() for part in
               tornado_cgen.__version__.split(".")[:2])


def test_version_module_imports_nothing():
    # pyproject.toml reads the version from it at build time, when the C
    # extension (which the package imports) does not exist yet.
    with open(_version.__file__) as f:
        tree = ast.parse(f.read())
    assert not [node for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_installed_metadata_has_the_same_version():
    # Only when the package under test is an installed distribution (CI
    # installs the wheel); a PYTHONPATH checkout has no metadata of its own.
    try:
        dist = importlib.metadata.distribution("tornado-cgen")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tornado-cgen runs from a source tree, not installed")
    files = [str(f) for f in dist.files or ()]
    if not any(f.startswith("tornado_cgen/") for f in files) or \
            os.path.realpath(dist.locate_file("tornado_cgen/__init__.py")) \
            != os.path.realpath(tornado_cgen.__file__):
        pytest.skip("the installed tornado-cgen is not the one under test")
    assert dist.version == tornado_cgen.__version__


@pytest.mark.parametrize("hide_tornado", [False, True],
                         ids=["with-tornado", "without-tornado"])
def test_version_command(hide_tornado):
    proc = _version_output(hide_tornado)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "tornado-cgen " + tornado_cgen.__version__
    assert lines[1].startswith("%s %s " % (platform.python_implementation(),
                                           platform.python_version()))
    assert sys.executable in lines[1]
    try:
        import tornado
    except ImportError:
        tornado = None
    if hide_tornado or tornado is None:
        assert lines[2] == "Tornado: not installed"
    else:
        assert lines[2] == "Tornado " + tornado.version
    assert len(lines) == 3


def test_typing_marker_and_stubs_ship_with_the_package():
    assert os.path.isfile(os.path.join(PACKAGE_DIR, "py.typed"))
    for name in PUBLIC_MODULES:
        assert os.path.isfile(os.path.join(PACKAGE_DIR, name + ".pyi")), name
