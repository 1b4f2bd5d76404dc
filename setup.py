"""Build script for tornado-cgen.

The C extension ``tornado_cgen._core`` is built from every ``ext/*.c`` file.
It is not optional: a failed compile fails the install.

Environment switches (read at build time):

``TCG_DEBUG=1``
    ``-O0 -g3``, assertions on (``NDEBUG`` undefined), ``TCG_DEBUG`` defined.
``TCG_SANITIZE=1``
    AddressSanitizer + UndefinedBehaviorSanitizer (implies the debug flags).
    Run the result with ``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``
    and ``PYTHONMALLOC=malloc``.
``TCG_WERROR=1``
    ``-Wall -Wextra -Werror`` (CI sets this).  ``-Wall -Wextra`` are always on.
``TCG_POLLER=epoll`` or ``TCG_POLLER=poll``
    The event loop's readiness backend (ext/poller.h): epoll with an
    eventfd waker (the default on Linux), or poll(2) with a self-pipe (the
    default everywhere else; set it on Linux to build and test the portable
    one).  ``tornado_cgen._core.POLLER`` says which was built.
"""
import glob
import os
import sys

from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


extra_compile_args = ["-Wall", "-Wextra", "-Wno-missing-field-initializers",
                      "-Wno-unused-parameter", "-std=c11", "-fno-strict-aliasing"]
extra_link_args = []
define_macros = []
undef_macros = []

if _flag("TCG_WERROR"):
    extra_compile_args.append("-Werror")

if _flag("TCG_DEBUG") or _flag("TCG_SANITIZE"):
    extra_compile_args += ["-O0", "-g3", "-UNDEBUG"]
    undef_macros.append("NDEBUG")
    define_macros.append(("TCG_DEBUG", "1"))
else:
    extra_compile_args += ["-O2"]

if _flag("TCG_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
           "-fno-sanitize-recover=undefined"]
    extra_compile_args += san
    extra_link_args += san

poller = os.environ.get("TCG_POLLER", "").strip().lower() or (
    "epoll" if sys.platform.startswith("linux") else "poll")
if poller not in ("epoll", "poll"):
    raise SystemExit("TCG_POLLER must be 'epoll' or 'poll', not %r" % poller)
if poller == "epoll" and not sys.platform.startswith("linux"):
    raise SystemExit("TCG_POLLER=epoll needs Linux")
# Both backends' files are compiled; the one not chosen is empty.
define_macros.append(("TCG_POLLER_" + poller.upper(), "1"))

core = Extension(
    "tornado_cgen._core",
    sources=sorted(glob.glob(os.path.join("ext", "*.c"))),
    depends=sorted(glob.glob(os.path.join("ext", "*.h"))),
    include_dirs=["ext"],
    define_macros=define_macros,
    undef_macros=undef_macros,
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

setup(ext_modules=[core])
