"""``python -m tornado_cgen <command>``.

Commands:
    bench    side-by-side benchmark (``python -m tornado_cgen bench --help``)
"""
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from .bench.cli import main as bench_main
        return bench_main(rest)
    print("unknown command %r\n\n%s" % (command, __doc__.strip()),
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
