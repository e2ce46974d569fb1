"""A Ctrl-C inside ``interrupt_after`` waits for the body to finish, then is raised."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from matchlab.interrupts import interrupt_after


def test_a_ctrl_c_in_the_body_is_raised_when_the_body_has_finished():
    done = []
    with pytest.raises(KeyboardInterrupt), interrupt_after():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("the rest of the body ran")
    assert done == ["the rest of the body ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_without_a_ctrl_c_nothing_is_raised_and_off_the_main_thread_the_body_just_runs():
    with interrupt_after():
        pass
    ran = []

    def body() -> None:
        with interrupt_after():  # signal.signal would raise ValueError here
            ran.append(True)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert ran == [True]
