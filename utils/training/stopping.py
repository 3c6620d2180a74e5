"""Stopping a run on request: Ctrl-C or SIGTERM asks it to stop with a checkpoint at the step reached."""

import contextlib
import signal

import tensorflow as tf

from utils.runtime import distribution
from utils.scripts import STOP_SIGNALS, handling_stop_signals


class TrainingStopped(Exception):
    """A run stopped on request, with a checkpoint at the step it reached."""

    def __init__(self, message, signal_name):
        super().__init__(message)
        # As shells report a process that the signal ended: 130 for Ctrl-C, 143 for SIGTERM.
        self.exit_code = 128 + signal.Signals[signal_name]


@contextlib.contextmanager
def stop_on_signals(trainer):
    """Inside it, a first SIGINT or SIGTERM asks the trainer to stop with a checkpoint.

    The handler runs once the compiled call under way returns (at most
    steps_per_call steps) and puts back the default actions, so that a second
    signal after it ends the process at once, saving nothing more.
    """
    def request_stop(signal_number, frame):
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_DFL)
        trainer.stop_requested = signal.Signals(signal_number).name

    with handling_stop_signals(request_stop):
        yield


def agreed_stop(trainer):
    """Whether to stop now; on several machines, every worker stops at the same step.

    A scheduler's SIGTERM reaches the workers at slightly different times.
    Were each to stop on its own, one would save and exit while another
    waited for it in the next step's all-reduce. So between calls the
    workers gather the signal number each received (0: none) and all stop
    on the highest.
    """
    strategy = trainer.strategy
    if distribution.task(strategy)[0] is None:
        return trainer.stop_requested
    received = signal.Signals[trainer.stop_requested].value if trainer.stop_requested else 0
    # tf.distribute reduces by sum or mean only: gather every replica's number, take the highest.
    highest = tf.reduce_max(strategy.gather(strategy.run(lambda: tf.constant([received])), axis=0))
    if int(highest):
        trainer.stop_requested = signal.Signals(int(highest)).name
    return trainer.stop_requested
