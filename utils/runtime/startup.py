"""Loads TensorFlow as every script here wants it: oneDNN on, and without its start-up lines.

Each script imports this module before anything that imports TensorFlow or Keras:

    import utils.runtime.startup  # noqa: F401  (first: TensorFlow's settings must precede it)

TF_CPP_MIN_LOG_LEVEL=1 hides TensorFlow's INFO lines and keeps its warnings
and errors. It cannot hide what TensorFlow's libraries log while they load,
before they read the variable: absl's "All log messages before
absl::InitializeLog()" notice, "oneDNN custom operations are on" and "Could
not find cuda drivers" show even at level 3 (measured with TensorFlow 2.21).
Nor does it hide "failed call to cuInit: ... (303)", an error at every level
below 3, which only says that the machine has no NVIDIA driver. So while
TensorFlow loads and lists its devices, stderr goes through a filter that
drops exactly those lines and passes on everything else: warnings, errors,
tracebacks. TF_CPP_MIN_LOG_LEVEL=0 turns the filter off and shows every line.

Under strategy multi_worker, a peer that does not join or is lost sets off
TensorFlow's collectives and coordination service: each logs the error,
many lines long, before the Python error that train.py turns into one
`error:` line. filter_peer_loss_noise drops those records too, from the
strategy's start until the process ends (some come as it exits).
"""

import contextlib
import os
import re
import subprocess
import sys

# oneDNN kernels make the convolutions about 1.7x faster on CPU; TensorFlow
# leaves them off by default on AMD processors. Must be set before TF loads.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

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

# The filter runs in a process of its own: should TensorFlow abort while it
# loads, the lines that say why have already gone through, none is held back.
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


def start_filter(*patterns):
    """Sends file descriptor 2 (stderr, also C++'s) through FILTER_PROGRAM with `patterns`;
    returns the filter's process and a copy of the descriptor it replaced."""
    saved_stderr = os.dup(2)
    # Its own process group, out of reach of the terminal's Ctrl-C, so that a
    # Ctrl-C while TensorFlow loads does not stop the filter before it has
    # passed on the traceback.
    filter_process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", FILTER_PROGRAM, *(pattern.pattern.decode() for pattern in patterns)],
        stdin=subprocess.PIPE, stdout=saved_stderr, process_group=0)
    sys.stderr.flush()
    os.dup2(filter_process.stdin.fileno(), 2)
    return filter_process, saved_stderr


def filter_peer_loss_noise():
    """From now until the process ends, stderr also drops PEER_LOSS_RECORDS (the filter ends when
    the process closes its last copy of the pipe). TF_CPP_MIN_LOG_LEVEL=0: every line shows."""
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
        filter_process, saved_stderr = start_filter(STARTUP_NOISE, PEER_LOSS_RECORDS, RECORD_END)
        filter_process.stdin.close()  # Descriptor 2 holds the pipe now.
        os.close(saved_stderr)
        PEER_LOSS_FILTERS.append(filter_process)  # Kept, so that nothing waits for or warns about it.


@contextlib.contextmanager
def startup_noise_filtered():
    """Inside it, file descriptor 2 (stderr, also C++'s) goes through FILTER_PROGRAM."""
    filter_process, saved_stderr = start_filter(STARTUP_NOISE)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        filter_process.stdin.close()
        filter_process.wait()


def load_tensorflow():
    """Imports TensorFlow and lists its devices (where the cuInit error comes from), quietly."""
    import tensorflow as tf

    tf.config.list_physical_devices()


if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
    load_tensorflow()
else:
    with startup_noise_filtered():
        load_tensorflow()
