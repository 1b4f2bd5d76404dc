"""The type information the package ships (``py.typed``, the stubs).

``mypy --strict`` must accept the README's Python examples and
``tests/typed_example.py`` as written, and ``mypy.stubtest`` must find the
stubs true to the runtime modules (``tests/stubtest_allowlist.txt`` lists
what it cannot see, with reasons).  Both need mypy (in the ``test``
extra); without it they are skipped.
"""
import os
import re
import site
import subprocess
import sys
import sysconfig

import pytest

import tornado_cgen

import conftest
import typed_example

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(
    os.path.abspath(tornado_cgen.__file__)))


# What the README's examples import that is the reader's own.
MYAPP = '''\
import tornado.web


def make_app() -> tornado.web.Application:
    return tornado.web.Application()
'''


def readme_examples():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def _mypy_env():
    env = conftest._child_env(False)
    env.pop("PYTHONPATH", None)
    # The package under test: an installed one is found by mypy itself
    # (PEP 561); a checkout's is named (mypy refuses site-packages here).
    installed = {os.path.realpath(p) for p in
                 site.getsitepackages() + [site.getusersitepackages(),
                                           sysconfig.get_path("purelib"),
                                           sysconfig.get_path("platlib")]}
    if os.path.realpath(PACKAGE_PARENT) not in installed:
        env["MYPYPATH"] = env["PYTHONPATH"] = PACKAGE_PARENT
    return env


def _need_mypy():
    pytest.importorskip("mypy")
    if conftest._asan_loaded():
        # The stubs are the same on every build; mypy itself under the
        # sanitizer runtime would only be slow.
        pytest.skip("the type checks run on the release build")


def _mypy(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=_mypy_env(),
        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    # One cache for the module's mypy runs: the standard library's and
    # Tornado's types are read once.
    return str(tmp_path_factory.mktemp("mypy-cache"))


def test_readme_has_python_examples():
    # The strict check below covers them all; this keeps it from passing
    # over none.
    assert os.path.isfile(README)
    assert len(readme_examples()) >= 5


def test_mypy_strict_on_readme_examples_and_typed_example(tmp_path,
                                                          mypy_cache):
    _need_mypy()
    (tmp_path / "myapp.py").write_text(MYAPP)
    files = ["myapp.py"]
    for i, code in enumerate(readme_examples()):
        name = "readme_example_%d.py" % i
        (tmp_path / name).write_text(code)
        files.append(name)
    with open(typed_example.__file__, encoding="utf-8") as f:
        (tmp_path / "typed_example.py").write_text(f.read())
    files.append("typed_example.py")
    proc = _mypy(["mypy", "--strict", "--no-error-summary",
                  "--cache-dir", mypy_cache, *files],
                 cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_sees_the_stubs(tmp_path, mypy_cache):
    # A wrong use must fail, or the check above proves nothing.
    _need_mypy()
    (tmp_path / "wrong.py").write_text(
        "from tornado_cgen import gen\n"
        "@gen.coroutine\n"
        "def f() -> int:\n"
        "    return 1\n"
        "x: int = f()\n"
        "gen.sleep('1')\n")
    proc = _mypy(["mypy", "--strict", "--cache-dir", mypy_cache,
                  "wrong.py"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'expression has type "Future[int]", variable has type "int"' \
        in proc.stdout
    assert 'Argument 1 to "sleep" has incompatible type "str"' in proc.stdout


# stubtest builds the whole package; the modules without stubs (not
# public) are not held to mypy's rules there.
STUBTEST_CONFIG = """\
[mypy]
[mypy-tornado_cgen.bench.*,tornado_cgen.check.*,tornado_cgen.__main__,tornado_cgen._speedup]
ignore_errors = True
[mypy-matplotlib.*]
ignore_missing_imports = True
"""


def test_stubtest(tmp_path):
    _need_mypy()
    (tmp_path / "mypy.ini").write_text(STUBTEST_CONFIG)
    # The package and all its submodules, against their stubs (or, for
    # those without, their own source).
    proc = _mypy(["mypy.stubtest", "--mypy-config-file", "mypy.ini",
                  "--allowlist", os.path.join(HERE, "stubtest_allowlist.txt"),
                  "tornado_cgen"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_typed_example_runs():
    assert typed_example.standalone() == (
        12, 43, ["callback", "future"], 43, 3)


def test_typed_example_runs_installed():
    pytest.importorskip("tornado")
    assert typed_example.installed_mode() == 9
    assert not tornado_cgen.installed()
