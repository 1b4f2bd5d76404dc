"""``python -m tornado_cgen <command>``.

Commands:
    bench                 side-by-side benchmark
                          (python -m tornado_cgen bench --help)
    check [--soak]        the reliability figures: leaks, sanitizers,
                          threads, faults, ... (python -m tornado_cgen
                          check --help)
    run app.py [args]     run a program under tornado_cgen.install(): an
    run -m module [args]  installed Tornado on the C Runner and loop, with
                          no change to the program
    --version             print the versions of tornado-cgen, the
                          interpreter and Tornado (if installed)
"""
import os
import sys

RUN_USAGE = """\
usage: python -m tornado_cgen run app.py [args ...]
       python -m tornado_cgen run -m module [args ...]

Calls tornado_cgen.install(), then runs the program as `python app.py` or
`python -m module` would: as __main__, with sys.argv its name and its
arguments, sys.path[0] its directory (for -m, the current directory), and
python's own traceback and exit status when it fails.  A directory or zip
file with a __main__.py runs as it does under python."""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "--version":
        print(version_text())
        return 0
    if command == "bench":
        from .bench.cli import main as bench_main
        return bench_main(rest)
    if command == "run":
        return run(rest)
    if command == "check":
        from .check import main as check_main
        return check_main(rest)
    print("unknown command %r\n\n%s" % (command, __doc__.strip()),
          file=sys.stderr)
    return 2


def version_text():
    """``--version``: ours on the first line, then the interpreter's and
    the Tornado that ``import tornado`` finds (what ``install()`` would
    use), or that there is none."""
    import platform
    from ._version import __version__
    try:
        import tornado
    except ImportError:
        tornado_line = "Tornado: not installed"
    else:
        tornado_line = "Tornado %s" % getattr(tornado, "version", "(unknown)")
    return "\n".join([
        "tornado-cgen " + __version__,
        "%s %s (%s)" % (platform.python_implementation(),
                        platform.python_version(), sys.executable),
        tornado_line,
    ])


# ---- run ---------------------------------------------------------------------

def run(argv):
    """``run``: install(), then the program as ``__main__``.  Returns an
    exit status for errors of its own; the program's own exit (return,
    ``SystemExit``, an uncaught exception) is python's."""
    module = None
    if argv[:1] == ["--"]:
        argv = argv[1:]
    elif argv[:1] in (["-h"], ["--help"]):
        print(RUN_USAGE)
        return 0
    elif argv[:1] == ["-m"] and len(argv) > 1:
        module, argv = argv[1], argv[2:]
    elif argv and argv[0].startswith("-m") and argv[0] != "-m":
        module, argv = argv[0][2:], argv[1:]    # -mmodule, as python takes
    elif argv and argv[0].startswith("-"):
        print("python -m tornado_cgen run: %s %r\n\n%s" % (
            "-m needs a module name" if argv[0] == "-m" else
            "unknown option", argv[0], RUN_USAGE), file=sys.stderr)
        return 2
    if module is None and not argv:
        print(RUN_USAGE, file=sys.stderr)
        return 2

    import tornado_cgen
    try:
        tornado_cgen.install()
    except ImportError as e:        # no Tornado, or one too old
        print("python -m tornado_cgen run: %s" % e, file=sys.stderr)
        return 1

    if module is not None:
        _run_module(module, argv)
        return 0
    return _run_path(argv[0], argv[1:])


def _fresh_main():
    """A new, empty ``__main__`` module in ``sys.modules`` for the program,
    as the one python makes at startup: the program's globals are its own
    (this launcher's module, python's ``__main__`` so far, stays alive in
    ``_launcher``), and stay ``sys.modules["__main__"]`` until the
    interpreter exits (atexit handlers, pickling of its classes)."""
    import types
    global _launcher
    _launcher = sys.modules.get("__main__")
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    return main


_launcher = None


def _set_path0(entry):
    # python -m tornado_cgen put the current directory first on sys.path
    # (not under -P / PYTHONSAFEPATH, and then nothing is put there).
    if not getattr(sys.flags, "safe_path", False):
        if sys.path:
            sys.path[0] = entry
        else:
            sys.path.insert(0, entry)


def _run_module(name, args):
    # What `python -m name` does, with runpy's own function for it (the
    # interpreter calls the same one): the spec found from the current
    # directory, sys.argv[0] its file, "No module named ..." and status 1
    # if there is none.
    import runpy
    sys.argv[:] = [name] + args
    _set_path0(os.getcwd())
    _fresh_main()
    _catch_and_reraise(runpy._run_module_as_main, name, True)


def _run_path(path, args):
    if os.path.isdir(path) or not path.endswith(".py") and _is_zip(path):
        # python dir_or_zip: its __main__.py, with the path (absolute)
        # first on sys.path (runpy's function for it, as the interpreter's).
        import runpy
        sys.argv[:] = [path] + args
        _set_path0(os.path.abspath(path))
        _fresh_main()
        _catch_and_reraise(runpy._run_module_as_main, "__main__", False)
        return 0
    import importlib.machinery
    import io
    # python script.py: the code compiled under its absolute name and run
    # in __main__ with python's dunders, the script's directory (symlinks
    # resolved) first on sys.path.
    filename = os.path.abspath(path)
    try:
        with io.open_code(filename) as f:
            source = f.read()
    except OSError as e:        # python's own message and status
        print("%s: can't open file %r: [Errno %s] %s" % (
            getattr(sys, "orig_argv", [sys.executable])[0], filename,
            e.errno, e.strerror), file=sys.stderr)
        return 2
    sys.argv[:] = [path] + args
    _set_path0(os.path.dirname(os.path.realpath(path)))
    main = _fresh_main()
    main.__file__ = filename
    main.__cached__ = None
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__",
                                                           filename)
    _catch_and_reraise(_exec_source, source, filename, main.__dict__)
    return 0


def _exec_source(source, filename, namespace):
    exec(compile(source, filename, "exec"), namespace)


def _is_zip(path):
    import zipfile
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _catch_and_reraise(fn, *args):
    """``fn(*args)``, with an escaping exception (not ``SystemExit``) left
    to python to report and exit on (status 1; a ``KeyboardInterrupt``
    dies of SIGINT), but printed with the traceback python would give the
    program: this launcher's frames, and ``python -m tornado_cgen``'s own
    runpy frames before them, left out."""
    try:
        fn(*args)
    except SystemExit:
        raise
    except BaseException as e:
        sys.excepthook = _program_excepthook(sys.excepthook, e)
        raise


def _program_excepthook(hook, exc):
    launcher_globals = globals()

    def excepthook(exc_type, value, tb):
        sys.excepthook = hook        # once: put the program's hook back
        if value is exc:
            # Skip up to the innermost frame of this module at the top of
            # the traceback; what follows is the program's (for -m, from
            # runpy's _run_module_as_main, as under python -m).
            # (None for a SyntaxError of the script: python shows none.)
            t, last = tb, None
            while t is not None:
                if t.tb_frame.f_globals is launcher_globals:
                    last = t
                elif last is not None:
                    break
                t = t.tb_next
            if last is not None:
                # On the exception too: python's hook prints the
                # exception's own __traceback__.
                tb = last.tb_next
                value.__traceback__ = tb
        return hook(exc_type, value, tb)

    return excepthook


if __name__ == "__main__":
    sys.exit(main())
