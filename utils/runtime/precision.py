"""Which numbers a run computes in (config.precision): a Keras dtype policy, and why it was chosen.

    float32         every layer computes and stores in float32 (the paper's setting)
    mixed_bfloat16  layers compute in bfloat16, weights stay float32
    mixed_float16   layers compute in float16, weights stay float32; the loss is
                    scaled (keras.optimizers.LossScaleOptimizer) so that small
                    gradients do not underflow. For GPUs.
    auto            float32, for now: see AUTO_PICKS_BFLOAT16.

Under every policy the logits layers, the losses and the softmax stay in
float32 (model/networks.py, model/step.py), and the exported classifier is a
float32 model holding the same weights.
"""

import tensorflow as tf

from config import PRECISIONS
from utils.runtime.cpu import read_cpuinfo

# Whether auto picks mixed_bfloat16 on hardware with native bfloat16. It
# rests on bfloat16 ending within the spread of float32 over seeds of the
# presets, final step against final step (docs/performance.md).
AUTO_PICKS_BFLOAT16 = False

# CPU flags (/proc/cpuinfo) of instructions that compute in bfloat16.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bfloat16(flags, gpus):
    """A phrase naming the hardware's native bfloat16, or None without it.

    GPUs compute in bfloat16 from compute capability 8.0 (Ampere) on; CPUs
    with AVX512_BF16 or AMX.
    """
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability")
                    for gpu in gpus]
    if gpus and all(capability and capability >= (8, 0) for capability in capabilities):
        return f"GPU compute capability {min(capabilities)[0]}.{min(capabilities)[1]}"
    native = [flag for flag in NATIVE_BFLOAT16_FLAGS if flag in flags]
    return f"CPU flags {', '.join(native)}" if native and not gpus else None


def resolve(precision, flags=None, gpus=None):
    """(the Keras dtype policy to train with, a sentence saying why)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision, "set in the config"
    flags = read_cpuinfo()["flags"] if flags is None else flags
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    native = native_bfloat16(flags, gpus)
    if native is None:
        return "float32", "auto: no native bfloat16 here (AVX512_BF16, AMX, or a GPU of compute capability 8.0+)"
    if AUTO_PICKS_BFLOAT16:
        return "mixed_bfloat16", f"auto: native bfloat16 ({native})"
    return "float32", (f"auto: native bfloat16 ({native}), but its accuracy on this recipe is not "
                       "yet measured; --precision mixed_bfloat16 uses it")


def check_fits_hardware(policy, gpus=None):
    """Raises ValueError for a policy that this machine would only emulate at a crawl.

    Without a GPU, TensorFlow computes float16 in software: a default step
    then takes seconds instead of milliseconds.
    """
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    if policy == "mixed_float16" and not gpus:
        raise ValueError("precision mixed_float16 is for GPUs: this machine has none, and on a CPU "
                         "TensorFlow emulates float16 hundreds of times slower. Use --precision float32, "
                         "or mixed_bfloat16.")
