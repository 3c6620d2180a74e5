"""A fingerprint of what a fixed-seed run trains: one sha256 over every value of its final checkpoint.

    python tools/fingerprint.py --mnist PATH/mnist.npz --mnistm PATH/mnist_m.npz
    python tools/fingerprint.py --mnist PATH/mnist.npz --mnistm PATH/mnist_m.npz --presets paper --steps 50

Each preset trains `--steps` steps with `python train.py --preset P --seed 0
--precision float32` in a temporary folder, twice, and the final checkpoint's
values (weights, optimizer slots, step, GRL lambda; not the count of saves)
are hashed. A change that leaves training alone leaves the fingerprint
alone, so compare one before and one after a change of structure, on the same
machine: oneDNN's summation order depends on the CPU's instruction set and
the thread count, so the hash differs between CPU kinds and is never written
into a test. Only train.py's command line and the checkpoint's values are
read, not the code's names, so renamed variables do not change the hash.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_TRAIN_IMAGES = 60000


def parse_arguments(arguments):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", required=True, metavar="PATH", help="Keras-layout mnist.npz.")
    parser.add_argument("--mnistm", required=True, metavar="PATH", help="MNIST-M npz (create_mnistm.py).")
    parser.add_argument("--presets", nargs="+", default=["paper", "long"], help="Default: paper long.")
    parser.add_argument("--steps", type=int, default=200, help="Training steps per run (default: 200).")
    parser.add_argument("--batch_size", type=int, default=128, help="Default: 128, the paper's.")
    return parser.parse_args(arguments)


def checkpoint_digest(checkpoint_dir):
    """sha256 over the sorted digests of every value in the folder's latest checkpoint."""
    sys.path.insert(0, REPOSITORY)
    from utils.runtime import startup

    startup.set_up()
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_dir)
    digests = []
    for name in reader.get_variable_to_shape_map():
        if name.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter")):
            continue
        value = reader.get_tensor(name)
        digests.append(hashlib.sha256(f"{value.dtype}{value.shape}".encode() + value.tobytes()).hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest(), len(digests)


def train_and_digest(preset, arguments, folder):
    # epochs such that ceil(epochs * 60000 / half batch) is exactly `steps`.
    half_batch = arguments.batch_size // 2
    epochs = (arguments.steps - 0.5) * half_batch / MNIST_TRAIN_IMAGES
    command = [sys.executable, os.path.join(REPOSITORY, "train.py"), "--preset", preset, "--seed", "0",
               "--precision", "float32", "--epochs", repr(epochs), "--batch_size", str(arguments.batch_size),
               "--mnist", arguments.mnist, "--mnistm_path", arguments.mnistm, "--run_name", "fingerprint",
               "--log_dir", os.path.join(folder, "logs"), "--checkpoint_dir", os.path.join(folder, "checkpoints")]
    completed = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.exit(f"error: train.py failed for preset {preset}:\n{completed.stderr[-2000:]}")
    return checkpoint_digest(os.path.join(folder, "checkpoints", "fingerprint"))


def main(arguments=None):
    arguments = parse_arguments(arguments)
    for preset in arguments.presets:
        digests = []
        for _ in range(2):
            with tempfile.TemporaryDirectory() as folder:
                digests.append(train_and_digest(preset, arguments, folder))
        (digest, count), again = digests
        stable = "stable over 2 runs" if digests[0] == again else f"UNSTABLE: second run {again[0]}"
        print(f"{preset:<8} {arguments.steps} steps  {count} values  {digest}  ({stable})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
