"""Sets TensorFlow up as every script here wants it: oneDNN on, and without its start-up lines.

Each script that uses TensorFlow calls set_up() in main(), once its command
line is parsed and before its first import of a module that imports
TensorFlow or Keras (those imports sit in the functions that need them):

    def main(arguments):
        options, overrides = parser.parse(arguments)
        startup.set_up()
        from utils.training.trainer import Trainer

TF_ENABLE_ONEDNN_OPTS and TF_CPP_MIN_LOG_LEVEL are read once, when
TensorFlow's C++ library loads (setting them after `import tensorflow`
changes nothing, measured with TensorFlow 2.21), so set_up() sets their
defaults and then imports TensorFlow itself. A process that has imported
TensorFlow already (the test process) keeps the settings it loaded with.

TF_CPP_MIN_LOG_LEVEL=1 hides TensorFlow's INFO lines and keeps its warnings
and errors. It cannot hide what TensorFlow's libraries log while they load,
before they read the variable: absl's "All log messages before
absl::InitializeLog()" notice, "oneDNN custom operations are on" and "Could
not find cuda drivers" show even at level 3. Nor does it hide "failed call
to cuInit: ... (303)", an error at every level below 3, which only says that
the machine has no NVIDIA driver. So while TensorFlow loads and lists its
devices, file descriptor 2 (stderr, also C++'s) is held in a temporary file,
and every line but exactly those goes on to stderr afterwards: warnings,
errors, tracebacks. Should TensorFlow abort while it loads, its own lines
are lost with the process, but faulthandler names the Python line it died
on; TF_CPP_MIN_LOG_LEVEL=0 turns the filter off and shows every line as it
comes.

Under strategy multi_worker, a peer that does not join or is lost sets off
TensorFlow's collectives and coordination service: each logs the error,
many lines long, before the Python error that train.py turns into one
`error:` line. filter_peer_loss_noise drops those records too, from the
strategy's start until the process ends. That filter is a process of its
own: some records come as the process exits, after the interpreter has
finalized, when no Python code of this process runs any more.
"""

import contextlib
import faulthandler
import os
import re
import subprocess
import sys
import tempfile

# oneDNN kernels make the convolutions about 1.7x faster on CPU; TensorFlow
# leaves them off by default on some AMD processors.
DEFAULT_ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}

# One pattern per dropped line: absl's notice, an absl INFO line ("I" and a
# date), the cuInit error of a missing driver library (the code 303 of
# TensorFlow's CUDA stub when it cannot load libcuda), and the warning that
# MirroredStrategy's input iterator gives on every start on several devices,
# which says only that its internal generator skips tf.data's graph
# rewrites (TensorFlow issue 61816; train.py filters it there).
STARTUP_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    rb"|I\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    rb"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit: .*\(303\)$"
    rb"|W\d{4} [\d:.]+ +\d+ dataset\.cc:\d+\] Input of GeneratorDatasetOp::Dataset will not be optimized ")

# The first line of a C++ record that a lost or missing peer sets off, from
# the collectives (an abort, on every worker) or the coordination service
# (a missed heartbeat or registration, its agent's shutdown in error).
PEER_LOSS_RECORDS = re.compile(
    rb"[EW]\d{4} [\d:.]+ +\d+ (base_collective_executor|ring_alg|local_rendezvous|collective_\w+"
    rb"|coordination_service|coordination_service_agent|context_distributed_manager|context"
    rb"|preemption_\w+|grpc_\w+)\.cc:\d+\] ")
# Where a record's continuation lines end: another C++ record, or a line of Python's (an
# `error:` line, a traceback, a logging or warnings line).
RECORD_END = re.compile(rb"[IWEF]\d{4} [\d:.]+ |error: |Traceback |[A-Z]+:\S+:|\S+:\d+: \w+: ")

# The peer-loss filter, run as a process of its own (see the module's docstring).
# argv[2], when given, starts records dropped with their continuation lines.
FILTER_PROGRAM = """
import re, sys
noise = re.compile(sys.argv[1].encode())
records = re.compile(sys.argv[2].encode()) if len(sys.argv) > 2 else None
record_end = re.compile(sys.argv[3].encode()) if len(sys.argv) > 3 else None
dropping = False
for line in sys.stdin.buffer:
    if records is not None and (not dropping or record_end.match(line)):
        dropping = bool(records.match(line))
    if not dropping and not noise.match(line):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


PEER_LOSS_FILTERS = []


def set_up():
    """Sets TensorFlow's environment defaults, then imports it and lists its devices without its
    start-up lines. Call it before anything imports TensorFlow; later calls do nothing."""
    for name, value in DEFAULT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if "tensorflow" in sys.modules:
        return
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        load_tensorflow()
    else:
        with startup_noise_filtered():
            load_tensorflow()


def load_tensorflow():
    """Imports TensorFlow and lists its devices (where the cuInit error comes from)."""
    import tensorflow as tf

    tf.config.list_physical_devices()


@contextlib.contextmanager
def startup_noise_filtered():
    """Inside it, file descriptor 2 (stderr, also C++'s) is held back; on leaving, every line of it
    but STARTUP_NOISE goes on to stderr."""
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    crash_report = not faulthandler.is_enabled()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        if crash_report:
            faulthandler.enable(file=saved_stderr)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            if crash_report:
                faulthandler.disable()
            os.close(saved_stderr)
            held.seek(0)
            kept = b"".join(line for line in held if not STARTUP_NOISE.match(line))
            if kept:
                os.write(2, kept)


def filter_peer_loss_noise():
    """From now until the process ends, file descriptor 2 goes through FILTER_PROGRAM, which drops
    STARTUP_NOISE and PEER_LOSS_RECORDS (it ends when the process closes its last copy of the
    pipe). TF_CPP_MIN_LOG_LEVEL=0: every line shows."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    patterns = (STARTUP_NOISE, PEER_LOSS_RECORDS, RECORD_END)
    saved_stderr = os.dup(2)
    # Its own process group, out of reach of the terminal's Ctrl-C, so that it
    # still passes on the lines that a Ctrl-C makes the workers write.
    filter_process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", FILTER_PROGRAM, *(pattern.pattern.decode() for pattern in patterns)],
        stdin=subprocess.PIPE, stdout=saved_stderr, process_group=0)
    sys.stderr.flush()
    os.dup2(filter_process.stdin.fileno(), 2)
    filter_process.stdin.close()  # Descriptor 2 holds the pipe now.
    os.close(saved_stderr)
    PEER_LOSS_FILTERS.append(filter_process)  # Kept, so that nothing waits for or warns about it.
