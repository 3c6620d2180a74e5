"""Which numbers a run computes in (config.precision): a Keras dtype policy, and why it was chosen.

    float32         every layer computes and stores in float32 (the paper's setting)
    mixed_bfloat16  layers compute in bfloat16, weights stay float32
    mixed_float16   layers compute in float16, weights stay float32; the loss is
                    scaled (keras.optimizers.LossScaleOptimizer) so that small
                    gradients do not underflow. For GPUs.
    auto            mixed_bfloat16 where the hardware computes bfloat16 natively
                    (AVX512_BF16 or AMX on the CPU, a GPU of compute capability
                    8.0+), float32 elsewhere, where bfloat16 would be emulated.
                    On the presets, bfloat16 ends within float32's spread over
                    seeds (docs/performance.md); --precision float32 reproduces
                    the paper's setting bit for bit.

Under every policy the logits layers, the losses and the softmax stay in
float32 (model/networks.py, model/step.py), and the exported classifier is a
float32 model holding the same weights.
"""

import tensorflow as tf

from config import PRECISIONS
from utils.runtime.cpu import read_cpuinfo

# CPU flags (/proc/cpuinfo) of instructions that compute in bfloat16.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bfloat16(flags, gpu_capabilities):
    """A phrase naming the hardware's native bfloat16, or None without it.

    flags: the CPU's flags (/proc/cpuinfo); gpu_capabilities: the (major,
    minor) compute capability of each GPU, None where unknown. With GPUs the
    GPUs train, and compute in bfloat16 from compute capability 8.0 (Ampere)
    on; without, the CPU does with AVX512_BF16 or AMX.
    """
    if gpu_capabilities:
        if all(capability and tuple(capability) >= (8, 0) for capability in gpu_capabilities):
            major, minor = min(tuple(capability) for capability in gpu_capabilities)
            return f"GPU compute capability {major}.{minor}"
        return None
    native = [flag for flag in NATIVE_BFLOAT16_FLAGS if flag in flags]
    return f"CPU flags {', '.join(native)}" if native else None


def gpu_capabilities():
    """The (major, minor) compute capability of each GPU TensorFlow sees (None where unknown)."""
    return [tf.config.experimental.get_device_details(gpu).get("compute_capability")
            for gpu in tf.config.list_physical_devices("GPU")]


def resolve(precision, flags=None, capabilities=None):
    """(the Keras dtype policy to train with, a sentence saying why).

    flags and capabilities default to this machine's (read_cpuinfo,
    gpu_capabilities); tests pass made-up ones.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision, "set in the config"
    flags = read_cpuinfo()["flags"] if flags is None else flags
    capabilities = gpu_capabilities() if capabilities is None else capabilities
    native = native_bfloat16(flags, capabilities)
    if native is None:
        return "float32", "auto: no native bfloat16 here (AVX512_BF16, AMX, or a GPU of compute capability 8.0+)"
    return "mixed_bfloat16", (f"auto: native bfloat16 ({native}); --precision float32 for the "
                              "paper's float32, bit for bit")


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
