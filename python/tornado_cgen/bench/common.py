"""Small pieces shared by the case modules."""
import socket
import time

clock = time.perf_counter_ns

MSG_1K = b"x" * 1024


class NotAvailable(Exception):
    """This implementation cannot express the case (yet); ``str()`` says why.

    Raised before anything is timed; the report shows "n/a" and the reason.
    """


def socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def check(cond, what):
    """Fail loudly when a case did not do the work it claims to have timed."""
    if not cond:
        raise AssertionError("benchmark self-check failed: " + what)
