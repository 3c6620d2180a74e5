"""utils/scripts.py: a script stops on SIGINT or SIGTERM with one line, and ends quietly when the reader
of its output has gone; and every script's `python SCRIPT --help` into a closed pipe."""

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest

from utils import scripts

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `python SCRIPT ARGUMENTS...`, except that MODULE.FUNCTION first prints "waiting" and sleeps: a
# signal sent once that line is read reaches the script while it loads its data.
RUN_WAITING_IN = """
import importlib, runpy, sys, time
from utils.runtime import startup
startup.set_up()
script, module_name, function_name = sys.argv[1:4]
sys.argv = [script, *sys.argv[4:]]

def wait(*arguments, **keywords):
    print("waiting", flush=True)
    time.sleep(120)

setattr(importlib.import_module(module_name), function_name, wait)
runpy.run_path(script, run_name="__main__")
"""


def stop_while_waiting(script, function, signal_number, arguments, cwd):
    """(exit code, stderr) of `python script arguments` sent signal_number while `function`
    ("module.function") waits."""
    module_name, function_name = function.rsplit(".", 1)
    command = [sys.executable, "-c", RUN_WAITING_IN, os.path.join(REPOSITORY, script), module_name,
               function_name, *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                               env={**os.environ, "PYTHONPATH": REPOSITORY})
    try:
        for line in process.stdout:
            if line == "waiting\n":
                break
        else:
            pytest.fail(f"{script} ended before it reached {function}: {process.communicate()[1][-3000:]}")
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


def closed_pipe():
    """The write end of a pipe whose read end is closed, as when `| head` has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_raises_stopped_with_its_exit_code(signal_number):
    previous = signal.getsignal(signal_number)
    with pytest.raises(scripts.Stopped) as stopped:
        with scripts.stop_signals_raised():
            os.kill(os.getpid(), signal_number)
            time.sleep(30)  # The handler raises at once.
    assert stopped.value.exit_code == 128 + signal_number
    assert str(stopped.value) == f"Stopped by {signal.Signals(signal_number).name}"
    assert signal.getsignal(signal_number) == previous


def test_run_main_ends_quietly_when_the_reader_of_stdout_has_gone(monkeypatch):
    def prints_help():
        argparse.ArgumentParser(description="help text " * 50).parse_args(["--help"])

    for main in (prints_help, lambda: print("a line") or 0):
        stream = open(closed_pipe(), "w", encoding="utf-8")
        monkeypatch.setattr(sys, "stdout", stream)
        assert scripts.run_main(main) == 128 + signal.SIGPIPE
        stream.close()  # Its buffer went to /dev/null: closing raises nothing.
    monkeypatch.undo()
    assert scripts.run_main(lambda code: code, 3) == 3


@pytest.mark.parametrize("script", ["evaluate.py", "reverse_validation.py", "plot_curves.py", "plot_tsne.py",
                                    "run_results.py", "create_mnistm.py", "bench/train_speed.py"])
def test_help_into_a_closed_pipe_ends_without_a_traceback(script):
    # Buffered output, as when a user pipes the help on: it is written out when the script ends.
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    stdout = closed_pipe()
    try:
        completed = subprocess.run([sys.executable, os.path.join(REPOSITORY, script), "--help"], stdout=stdout,
                                   stderr=subprocess.PIPE, text=True, env=environment, cwd=REPOSITORY,
                                   timeout=120, check=False)
    finally:
        os.close(stdout)
    assert completed.returncode == 128 + signal.SIGPIPE, completed.stderr
    assert "BrokenPipeError" not in completed.stderr and "Traceback" not in completed.stderr
