"""The load check's figures pass on the servers as they are and fail on
servers made to go wrong (``TCG_LOAD_FAULT``).  Short runs of wrk; no
test asserts a speed."""
import os
import shutil

import pytest

from tornado_cgen.check import load
from tornado_cgen.check._report import Context, tornado_available

pytestmark = [
    pytest.mark.skipif(shutil.which("wrk") is None,
                       reason="wrk is not installed"),
    # The RSS figures mean nothing under AddressSanitizer (its quarantine
    # keeps freed memory), and the check runs this section on the release
    # build only.
    pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                       reason="not under AddressSanitizer"),
]

ECHO = {"TCG_LOAD_BODY": "@request", "TCG_LOAD_PATHS": ""}
TORNADO = {"TCG_LOAD_BODY": load.BODY_TORNADO,
           "TCG_LOAD_PATHS": "/,/coroutine"}


class Quiet(Context):
    def __init__(self):
        import io
        super().__init__("load", out=io.StringIO())


def figures(kind, env, seconds=2, warmup=1, churn=1):
    ctx = Quiet()
    load.one_server(ctx, kind, env, seconds, warmup, churn)
    return ctx.figures


def failed(figs):
    return [f.name for f in figs if not f.ok]


def test_echo_passes():
    figs = figures("echo", ECHO)
    assert failed(figs) == [], [f.line() for f in figs]
    names = [f.name for f in figs]
    assert "echo keep-alive 2 s: wrk socket errors" in names
    assert "echo churn (Connection: close) 1 s: connections left open " \
        "after wrk exits" in names
    assert any("RSS after 1 s warm-up" in n for n in names)


@pytest.mark.skipif(not tornado_available(), reason="needs Tornado")
def test_tornado_passes():
    figs = figures("tornado", TORNADO)
    assert failed(figs) == [], [f.line() for f in figs]
    work = [f for f in figs if f.name == "tornado: the C code did the work"]
    assert work and not work[0].value.startswith("0 coroutine calls")


@pytest.mark.parametrize("fault, fails", [
    ("badbody", "responses not 200 with the right body"),
    ("noclose", "connections left open after wrk exits"),
    ("leak", "RSS after 1 s warm-up"),
    ("crash", "server stops when told"),
])
def test_faults_fail(monkeypatch, fault, fails):
    monkeypatch.setenv("TCG_LOAD_FAULT", fault)
    bad = failed(figures("echo", ECHO, seconds=3))
    assert any(fails in name for name in bad), bad


def test_connections_sees_a_socket_held_open():
    import os
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    try:
        own, on_port, n = load.connections(os.getpid(), port)
        assert own.get("ESTABLISHED", 0) >= 2     # both ends are ours
        assert on_port == 1                       # the accepted end
        cli.close()
        own, on_port, _ = load.connections(os.getpid(), port)
        assert own.get("CLOSE_WAIT") == 1 and on_port == 1
    finally:
        conn.close()
        srv.close()
    own, on_port, m = load.connections(os.getpid(), port)
    assert on_port == 0 and m == n - 3
