"""Scripts start without TensorFlow's start-up lines, and its real warnings and errors still show."""

import os
import subprocess
import sys

import pytest

from conftest import help_without_tensorflow
from utils.runtime import startup
from utils.runtime.startup import startup_noise_filtered

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lines TensorFlow 2.21 prints while it loads on a CPU machine, as it prints them.
STARTUP_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1795935028.633570    7671 port.cc:153] oneDNN custom operations are on. You may "
    b"see slightly different numerical results.\n",
    b"I0000 00:00:1795935028.634106    7671 cudart_stub.cc:31] Could not find cuda drivers on your "
    b"machine, GPU will not be used.\n",
    b"E0000 00:00:1795935239.752385    8795 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n",
]
KEPT_LINES = [
    b"W0000 00:00:1795935028.633570    7671 op_kernel.cc:1857] a warning of TensorFlow's\n",
    b"E1129 06:51:25.123456    7671 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE (100)\n",
    b"F0000 00:00:1795935028.633570    7671 cpu_feature_guard.cc:1] a fatal error\n",
    b"Traceback (most recent call last):\n",
    b"<string>:1: UserWarning: a Python warning\n",
    b"I0 is not an absl line\n",
]


def test_only_the_startup_lines_are_dropped_while_tensorflow_loads(capfd):
    with startup_noise_filtered():
        for line in STARTUP_LINES + KEPT_LINES:
            os.write(2, line)
    assert capfd.readouterr().err.encode() == b"".join(KEPT_LINES)


def test_a_real_warning_of_tensorflow_still_shows():
    # As a script does it: set_up() in a fresh process, then a warning that TensorFlow's C++ logs.
    program = ("from utils.runtime import startup; startup.set_up(); import tensorflow as tf; "
               "tf.io.decode_image(b'not an image')")
    completed = subprocess.run([sys.executable, "-c", program], cwd=REPOSITORY, capture_output=True,
                               text=True, timeout=120, check=False)
    assert completed.returncode == 1
    assert "InvalidArgumentError" in completed.stderr
    assert "absl::InitializeLog" not in completed.stderr and "cuda drivers" not in completed.stderr


def test_set_up_loads_tensorflow_once_with_the_defaults(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    startup.set_up()  # TensorFlow is loaded in the test process already: only the defaults are set.
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] in ("0", "1")


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "reverse_validation.py", "create_mnistm.py",
                                    "plot_curves.py", "plot_tsne.py", "run_results.py"])
def test_a_script_parses_its_command_line_before_tensorflow_loads(script):
    # A typo fails in a fraction of a second, and only set_up() loads TensorFlow.
    _, tensorflow_loaded, stderr = help_without_tensorflow(script)
    assert not tensorflow_loaded, stderr


@pytest.mark.parametrize("script, arguments, expected_error", [
    ("evaluate.py", ["--help"], None),
    ("plot_curves.py", ["--help"], None),
    ("train.py", ["--epoch", "3"], "error: Unknown config key: 'epoch'"),
    # Past the command line: TensorFlow loads, and then the error.
    ("plot_curves.py", ["missing-run"], "error: Run folder 'missing-run' does not exist."),
    ("evaluate.py", ["--model", "missing.keras", "--out", "out/evaluation.json"], "error: "),
])
def test_scripts_print_no_tensorflow_startup_lines(script, arguments, expected_error):
    completed = subprocess.run([sys.executable, script, *arguments], cwd=REPOSITORY,
                               capture_output=True, text=True, timeout=120, check=False)
    lines = completed.stderr.splitlines()
    if expected_error is None:
        assert completed.returncode == 0 and lines == [], completed.stderr
    else:  # The one line that says what to fix, and nothing else.
        assert completed.returncode == 2 and len(lines) == 1, completed.stderr
        assert lines[0].startswith(expected_error)
