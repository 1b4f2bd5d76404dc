"""The loop's readiness backend (ext/poller.h): which one was built, and the
behaviour both must share (epoll's, which asyncio's selector loop has on
Linux).  The whole suite runs on each backend; these are the cases where
epoll and poll(2) differ underneath."""
import os
import socket
import sys
import tempfile
import threading
import time

import pytest

from tornado_cgen import _core


@pytest.fixture
def loop(tcg_loop):
    return tcg_loop


def run_until_stopped(loop, limit=10):
    """Run until a callback stops the loop; a safety stop after `limit`
    seconds, which the test's own assertion then catches."""
    loop.call_later(limit, loop.stop)
    loop.run_forever()


def test_poller_is_the_one_built():
    # setup.py: TCG_POLLER at build time, else epoll on Linux and poll
    # elsewhere.  A test run of a TCG_POLLER build sets the same variable.
    want = os.environ.get("TCG_POLLER", "").strip().lower() or (
        "epoll" if sys.platform.startswith("linux") else "poll")
    assert _core.POLLER == want


def test_regular_file_and_directory_are_refused(loop, tmp_path):
    # epoll_ctl's EPERM; the loop stays usable and nothing is registered.
    fd, path = tempfile.mkstemp(dir=tmp_path)
    dfd = os.open(str(tmp_path), os.O_RDONLY)
    try:
        for f in (fd, dfd):
            for add in (loop._add_reader, loop._add_writer):
                with pytest.raises(PermissionError):
                    add(f, print)
            assert loop._fd_key(f) is None
    finally:
        os.close(fd)
        os.close(dfd)
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_closed_fd_is_refused_when_adding_the_other_direction(loop):
    # A reader on a fd that is then closed: adding its writer fails as
    # adding to a bad fd does, and the reader is never called.
    a, b = socket.socketpair()
    fd = a.fileno()
    calls = []
    loop._add_reader(fd, calls.append, "r")
    a.close()
    with pytest.raises(OSError):
        loop._add_writer(fd, calls.append, "w")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert calls == []
    assert loop._remove_reader(fd)
    b.close()


def test_hangup_wakes_reader_and_writer(loop):
    # A pipe's read end never becomes writable: only the hang-up (the
    # write end closed, no data) wakes its writer, as it wakes its reader.
    r, w = os.pipe()
    got = set()

    def on(kind):
        got.add(kind)
        if kind == "r":
            loop._remove_reader(r)
        else:
            loop._remove_writer(r)
        if got == {"r", "w"}:
            loop.stop()

    try:
        loop._add_reader(r, on, "r")
        loop._add_writer(r, on, "w")
        loop.call_soon(os.close, w)
        run_until_stopped(loop)
        assert got == {"r", "w"}
    finally:
        os.close(r)


def test_reader_and_writer_on_one_fd(loop):
    a, b = socket.socketpair()
    got = []
    try:
        def on_write():
            got.append("w")
            loop._remove_writer(a.fileno())
            b.send(b"x")

        def on_read():
            got.append(a.recv(10))
            loop._remove_reader(a.fileno())
            loop.stop()

        loop._add_reader(a.fileno(), on_read)
        loop._add_writer(a.fileno(), on_write)
        run_until_stopped(loop)
        assert got == ["w", b"x"]
        assert loop._fd_key(a.fileno()) is None
    finally:
        a.close()
        b.close()


def test_many_fds_added_and_removed(loop):
    # More fds than one wait reports (epoll's batch) and than the poll
    # array's first size; every other one removed again, from the middle.
    pairs = [socket.socketpair() for _ in range(300)]
    fired = []
    try:
        for i, (a, b) in enumerate(pairs):
            loop._add_reader(a.fileno(), fired.append, i)
        for i, (a, b) in enumerate(pairs):
            if i % 2:
                assert loop._remove_reader(a.fileno())
        for a, b in pairs:
            b.send(b"x")
        want = set(range(0, 300, 2))

        def check():
            if set(fired) >= want:
                loop.stop()
            else:
                loop.call_later(0.001, check)

        loop.call_soon(check)
        run_until_stopped(loop)
        assert set(fired) == want
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_reader_added_from_another_thread_while_waiting(loop):
    # The loop sleeps in its wait; another thread (holding the GIL, as any
    # caller does) adds a reader for a fd that is readable already: the
    # loop sees it without any other wake-up.
    a, b = socket.socketpair()
    b.send(b"x")
    got = []

    def other():
        time.sleep(0.05)
        loop._add_reader(a.fileno(), lambda: (got.append(a.recv(10)),
                                              loop.stop()))

    t = threading.Thread(target=other)
    try:
        t.start()
        run_until_stopped(loop, 30)
        assert got == [b"x"]
    finally:
        t.join()
        loop._remove_reader(a.fileno())
        a.close()
        b.close()


def test_reader_removed_from_another_thread_while_waiting(loop):
    # ...and one removed while the loop waits is not called afterwards.
    a, b = socket.socketpair()
    calls = []
    loop._add_reader(a.fileno(), calls.append, 1)

    def other():
        time.sleep(0.05)
        loop._remove_reader(a.fileno())
        b.send(b"x")
        loop.call_soon_threadsafe(loop.call_later, 0.05, loop.stop)

    t = threading.Thread(target=other)
    try:
        t.start()
        run_until_stopped(loop, 30)
        assert calls == []
    finally:
        t.join()
        a.close()
        b.close()


def test_fd_reopened_and_registered_before_the_loop_reads_its_closure(loop):
    # Another thread closes a registered fd and wakes the loop, whose wait
    # then finds the fd closed (poll's POLLNVAL).  Before the loop has the
    # GIL back, the thread unregisters the fd, opens a new file under the
    # same number and registers that.  What the wait said is about the old
    # file: the new registration stays, and its reader runs.
    ctypes = pytest.importorskip("ctypes")
    dup2 = ctypes.PyDLL(None, use_errno=True).dup2   # keeps the GIL
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    fd = a.fileno()
    d.send(b"x")
    got, errors = [], []

    def on_read():
        got.append(os.read(fd, 10))
        loop.stop()

    def other():
        try:
            time.sleep(0.05)            # the loop is in its wait
            a.close()
            loop._wakeup()
            # Hold the GIL (a long switch interval, no blocking call) while
            # the wait returns and the loop thread waits for the GIL.
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.2:
                pass
            loop._remove_reader(fd)
            if dup2(c.fileno(), fd) != fd:
                raise OSError(ctypes.get_errno(), "dup2")
            loop._add_reader(fd, on_read)
        except BaseException as exc:   # reported by the test below
            errors.append(exc)

    loop._add_reader(fd, got.append, "old")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10)
    t = threading.Thread(target=other)
    try:
        t.start()
        run_until_stopped(loop, 5)
    finally:
        t.join()
        sys.setswitchinterval(interval)
        loop._remove_reader(fd)
        if a.fileno() == -1:            # closed above: fd is c's duplicate
            try:
                os.close(fd)
            except OSError:
                pass
        for s in (a, b, c, d):
            s.close()
    assert errors == []
    assert got == [b"x"]
