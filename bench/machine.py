"""The machine a benchmark ran on, and its fp32 peak, from /proc/cpuinfo.

The peak is an assumption, stated beside every number computed from it:

    peak flop/s = physical cores x clock x FMA pipes x fp32 lanes x 2

The clock is /proc/cpuinfo's "cpu MHz": on a VM, the nominal clock, and on
a host, a sample of a clock that moves with load; boost clocks are not
counted, so a core that boosts can exceed the peak. The lane count is what
the FMA units compute per cycle with the widest vector extension listed in the
flags: AVX-512 16 fp32 lanes, except on AMD Zen 4 (family 25 with AVX-512),
which runs each 512-bit instruction as two 256-bit halves (8 lanes); AVX2 8;
otherwise 4. Zen 5 (family 26) counts as 16: its server and desktop parts
have 512-bit units, its laptop parts 256-bit ones, which this cannot tell
apart. Every core is assumed to have two FMA pipes (Zen 3, 4 and 5, and Intel
server cores from Skylake-SP on, whose low-end Xeons with one AVX-512 FMA
unit are counted at twice their peak). A multiply-add counts as 2 flops.
"""

import math
import os
import platform
import resource
import time

import keras

from utils.runtime.cpu import read_cpuinfo

FMA_PIPES_PER_CORE = 2
# AMD's "cpu family" of Zen 3 and Zen 4; only Zen 4 lists AVX-512.
ZEN4_FAMILY = 25


def fp32_peak(cpu):
    """(peak flop/s or None, a sentence stating how it was computed)."""
    flags = cpu["flags"]
    if "avx512f" in flags and cpu.get("vendor") == "AuthenticAMD" and cpu.get("family") == ZEN4_FAMILY:
        lanes, extension = 8, "AVX-512 on 256-bit units, AMD Zen 4"
    elif "avx512f" in flags:
        lanes, extension = 16, "AVX-512"
    elif "avx2" in flags:
        lanes, extension = 8, "AVX2"
    else:
        lanes, extension = 4, "SSE"
    flops_per_cycle = FMA_PIPES_PER_CORE * lanes * 2
    if cpu["mhz"] is None:
        return None, "no clock in /proc/cpuinfo: peak unknown"
    peak = cpu["physical_cores"] * cpu["mhz"] * 1e6 * flops_per_cycle
    return peak, (f"{cpu['physical_cores']} cores x {cpu['mhz']:.0f} MHz ('cpu MHz' in /proc/cpuinfo, "
                  f"no boost) x {FMA_PIPES_PER_CORE} FMA pipes x {lanes} fp32 lanes ({extension}) "
                  f"x 2 flops = {flops_per_cycle} flops/cycle/core -> {peak / 1e9:.1f} GFLOP/s")


def settings(tf):
    """The runtime settings that change the speed, for the benchmark's JSON."""
    cpu = read_cpuinfo()
    return {
        "tf_version": tf.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF default: off on AMD)"),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "threads_note": "0 means TensorFlow picks (one per logical CPU)",
        "cpu_model": cpu["model"],
        "cpu_mhz": cpu["mhz"],
        "logical_cpus": cpu["logical_cpus"],
        "physical_cores": cpu["physical_cores"],
        "python": platform.python_version(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def peak_rss_mb():
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(step, warmup_steps, seconds):
    """Runs step(number) warmup_steps times untimed, then for `seconds` (and at least 3 times).

    Returns (timed steps, wall seconds, CPU seconds of this process, the rate
    of each timed call in calls per second).
    """
    for number in range(warmup_steps):
        step(number)
    rates, number = [], warmup_steps
    started, cpu_started = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or len(rates) < 3:
        step_started = time.perf_counter()
        step(number)
        rates.append(1.0 / (time.perf_counter() - step_started))
        number += 1
    return number - warmup_steps, time.perf_counter() - started, time.process_time() - cpu_started, rates


def layer_macs_per_image(network):
    """{layer name: multiply-adds of one image through it} for the Conv2D and Dense layers of network."""
    macs = {}
    for layer in network.layers:
        if isinstance(layer, keras.layers.Conv2D):
            output_height, output_width = layer.output.shape[1:3]
            # The kernel is (k, k, in_c, out_c).
            macs[layer.name] = output_height * output_width * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            macs[layer.name] = math.prod(layer.kernel.shape)
    return macs


def forward_macs_per_image(networks):
    """Multiply-adds of one image through the feature extractor and both classifiers."""
    return sum(sum(layer_macs_per_image(network).values()) for network in
               (networks.feature_extractor, networks.label_classifier, networks.domain_classifier))
