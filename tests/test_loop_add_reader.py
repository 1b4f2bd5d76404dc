"""The loop's public add_reader, add_writer, remove_reader, remove_writer.

Ours are C (``ext/loop.c``, ``public_io``): the stdlib's check that no
transport owns the fd, skipped when the loop has no transport at all,
then the underscore method.  Every test runs on asyncio's own selector
loop ("asyncio", the oracle) and on ours ("tcg") with the same
assertions: return values, errors and messages, the transport check, and
an underscore method a test or subclass replaced.
"""
import asyncio
import socket
from unittest import mock

import pytest

import tornado_cgen
import tornado_cgen.loop


@pytest.fixture(params=["asyncio", "tcg"])
def loop(request):
    lp = (asyncio.SelectorEventLoop() if request.param == "asyncio"
          else tornado_cgen.new_event_loop())
    yield lp
    if not lp.is_closed():
        lp.close()


def test_return_values(loop, pair):
    a, b = pair
    assert loop.add_reader(a.fileno(), print) is None
    assert loop.add_reader(a.fileno(), print, 1, 2) is None   # replaces
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a.fileno()) is False
    assert loop.add_writer(a, print) is None                  # a file object
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a.fileno()) is False
    assert loop.remove_reader(b) is False


def test_callbacks_run(loop, pair):
    a, b = pair
    got = []

    def readable(tag):
        got.append((tag, b.recv(100)))
        loop.remove_reader(b.fileno())
        loop.stop()

    loop.add_reader(b.fileno(), readable, "r")
    a.send(b"x")
    loop.run_forever()

    def writable():
        got.append("w")
        loop.remove_writer(a)
        loop.stop()

    loop.add_writer(a, writable)
    loop.run_forever()
    assert got == [("r", b"x"), "w"]


def test_bad_fds(loop):
    with pytest.raises(ValueError, match="Invalid file object: 'x'"):
        loop.add_reader("x", print)
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.remove_writer(object())
    with pytest.raises(TypeError):
        loop.add_reader(0)
    with pytest.raises(TypeError):
        loop.remove_reader()
    with pytest.raises(TypeError):
        loop.remove_reader(0, 1)


def test_closed_loop(loop, pair):
    a, _ = pair
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_reader(a.fileno(), print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_writer(a.fileno(), print)
    assert loop.remove_reader(a.fileno()) is False
    assert loop.remove_writer(a.fileno()) is False


def test_an_fd_a_transport_owns(loop, pair):
    a, b = pair

    async def main():
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        fd = a.fileno()
        for call in (lambda: loop.add_reader(fd, print),
                     lambda: loop.add_writer(a, print),
                     lambda: loop.remove_reader(fd),
                     lambda: loop.remove_writer(a)):
            with pytest.raises(RuntimeError, match="is used by transport"):
                call()
        # Other fds are free while the transport lives.
        assert loop.add_reader(b.fileno(), print) is None
        assert loop.remove_reader(b.fileno()) is True
        transport.close()
        # A closing transport no longer owns it.
        assert loop.remove_reader(fd) is False
        await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_a_replaced_underscore_method_is_called(loop, pair):
    a, _ = pair
    for name, call in (("_add_reader", lambda: loop.add_reader(a, print, 7)),
                       ("_add_writer", lambda: loop.add_writer(a, print)),
                       ("_remove_reader", lambda: loop.remove_reader(a)),
                       ("_remove_writer", lambda: loop.remove_writer(a))):
        with mock.patch.object(loop, name, return_value="mocked") as m:
            result = call()
        m.assert_called_once()
        assert m.call_args.args[0] is a
        assert result == (None if name.startswith("_add") else "mocked")
    assert loop.remove_reader(a) is False     # the mocks registered nothing


def test_a_subclass_check_runs_for_file_objects():
    checked = []

    class Checked(tornado_cgen.loop.Loop):
        def _ensure_fd_no_transport(self, fd):
            checked.append(fd)
            return super()._ensure_fd_no_transport(fd)

    loop = Checked()
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, print)
        loop.remove_reader(a)
        assert checked == [a, a]
    finally:
        loop.close()
        a.close()
        b.close()


def test_fd_and_callback_by_name(loop, pair):
    # The stdlib's are Python functions: fd and callback may be keywords.
    a, _ = pair
    fd = a.fileno()
    assert loop.add_reader(fd=fd, callback=print) is None
    assert loop.add_writer(a, callback=print) is None
    assert loop.remove_reader(fd=fd) is True
    assert loop.remove_writer(fd=a) is True
    for call in (lambda: loop.add_reader(fd, print, fd=fd),
                 lambda: loop.add_reader(fd, cb=print),
                 lambda: loop.add_writer(callback=print),
                 lambda: loop.add_writer(fd, print, 1, callback=print),
                 lambda: loop.remove_reader(fd, fd=fd),
                 lambda: loop.remove_writer(fileno=fd)):
        with pytest.raises(TypeError):
            call()
    assert loop.remove_reader(fd) is False


def test_a_replaced_check_is_called_for_int_fds(loop, pair):
    # A mocked _ensure_fd_no_transport sees every call, transports or not.
    a, _ = pair
    fd = a.fileno()
    with mock.patch.object(loop, "_ensure_fd_no_transport") as m:
        loop.add_reader(fd, print)
        loop.remove_reader(fd)
        loop.add_writer(fd, print)
        loop.remove_writer(fd)
    assert [c.args for c in m.call_args_list] == [(fd,)] * 4


def test_a_subclass_check_runs_for_int_fds():
    class Refusing(tornado_cgen.loop.Loop):
        def _ensure_fd_no_transport(self, fd):
            raise RuntimeError("refused %r" % (fd,))

    loop = Refusing()
    a, b = socket.socketpair()
    try:
        with pytest.raises(RuntimeError, match="refused"):
            loop.add_reader(a.fileno(), print)
        with pytest.raises(RuntimeError, match="refused"):
            loop.remove_writer(a.fileno())
    finally:
        loop.close()
        a.close()
        b.close()
