"""What the scripts share around their main function: stopping on a signal with one line, and ending
quietly when the reader of their output goes away early (`python evaluate.py --help | head`).

    if __name__ == "__main__":
        sys.exit(run_main(main))

    with stop_signals_raised():
        ...  # Ctrl-C or SIGTERM raises Stopped here, which main turns into one line and its exit code.
"""

import contextlib
import os
import signal
import subprocess
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Ctrl-C sends SIGINT; `kill` and job schedulers send SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A stop signal received inside stop_signals_raised.

    A KeyboardInterrupt, so that code which cleans up after Ctrl-C (atomic
    writes remove their temporary files) does the same after SIGTERM, and
    `except Exception` does not swallow it.
    """

    def __init__(self, signal_number):
        self.signal_name = signal.Signals(signal_number).name
        # As shells report a process that the signal ended: 130 for SIGINT, 143 for SIGTERM.
        self.exit_code = 128 + signal_number
        super().__init__(f"Stopped by {self.signal_name}")


def _raise_stopped(signal_number, frame):
    # Further signals are ignored while Stopped unwinds: the clean-up takes
    # milliseconds, and a second Stopped raised inside it would cut it short.
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    raise Stopped(signal_number)


@contextlib.contextmanager
def stop_signals_raised():
    """Inside it, SIGINT and SIGTERM raise Stopped in the main thread; the previous handlers come back after.

    Without it SIGTERM would end the process at once, skipping every
    clean-up. Call it from the main thread only (Python's signal rule).
    """
    with handling_stop_signals(_raise_stopped):
        yield


@contextlib.contextmanager
def handling_stop_signals(handler):
    """Inside it, `handler` receives SIGINT and SIGTERM; the previous handlers come back after."""
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)


def run_main(main, *arguments, **keywords):
    """main(*arguments, **keywords)'s exit code, after writing out everything it printed.

    When the reader of stdout has gone (a pipe into `head`), the script ends
    without a traceback and with 141 (128 + SIGPIPE), what a shell reports for
    a program that a closed pipe ended. SystemExit from argparse (--help, a
    bad argument) passes through once stdout is written out.
    """
    try:
        try:
            return main(*arguments, **keywords)
        finally:
            # Printed text may still be buffered: written here, a closed pipe
            # raises inside this try rather than at interpreter exit.
            sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout once more at exit; /dev/null takes what is left.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE


def run_child(arguments):
    """Runs a script of this repository, `arguments` = [script, its arguments...], in a child
    process whose output goes to this terminal; returns its exit code.

    The child runs in a process group of its own, so a Ctrl-C at the terminal
    reaches the parent alone; the parent passes each Ctrl-C or SIGTERM on to
    the child once and waits, so that the child saves its checkpoint and exits
    as train.py does when it is stopped (130 or 143).
    """
    child = subprocess.Popen([sys.executable, os.path.join(REPOSITORY, arguments[0]), *arguments[1:]],
                             process_group=0)

    def pass_on(signal_number, frame):
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal_number)

    with handling_stop_signals(pass_on):
        return child.wait()
