"""The processor this runs on, from /proc/cpuinfo: its model, clock, flags and cores."""

import os
import platform


def read_cpuinfo(path="/proc/cpuinfo"):
    """Model name, vendor and family, mean clock in MHz, flags and core counts; empty fields where
    the file is missing."""
    processors = []
    try:
        with open(path, encoding="utf-8") as stream:
            block = {}
            for line in stream:
                key, separator, value = line.partition(":")
                if not separator:
                    if block:
                        processors.append(block)
                    block = {}
                    continue
                block[key.strip()] = value.strip()
            if block:
                processors.append(block)
    except OSError:
        pass
    logical = len(os.sched_getaffinity(0))
    clocks = [float(block["cpu MHz"]) for block in processors if "cpu MHz" in block]
    cores = {(block.get("physical id"), block.get("core id")) for block in processors
             if "core id" in block}
    first = processors[0] if processors else {}
    return {
        "model": first.get("model name", platform.processor() or "unknown"),
        "vendor": first.get("vendor_id", ""),
        "family": int(first["cpu family"]) if first.get("cpu family", "").isdigit() else None,
        "mhz": sum(clocks) / len(clocks) if clocks else None,
        "flags": set(first.get("flags", "").split()),
        "logical_cpus": logical,
        # SMT siblings share the FMA pipes of one core, so the peak counts cores.
        "physical_cores": min(len(cores), logical) if cores else logical,
    }
