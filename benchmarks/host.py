"""The machine a benchmark ran on, in one line, for its header: which CPU (the hosts of a cloud VM change
from one boot to the next, and with them the speed of memory, vector search and matrix products), its
vector units, its memory."""

from __future__ import annotations

import os
import platform
from pathlib import Path

UNITS = (("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512 BF16"), ("avx512_vnni", "VNNI"), ("avx_vnni", "AVX-VNNI"),
         ("amx_tile", "AMX"))


def machine() -> str:
    """``2 CPUs: Intel(R) Xeon(R) Processor (family 6, model 143); AVX2, AVX-512, AMX; 23 GiB`` (Linux); the
    processor as ``platform`` names it elsewhere."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    model = f" (family {info['cpu family']}, model {info['model']})" if "model" in info and "cpu family" in info else ""
    flags = set(info.get("flags", "").split())
    units = [label for flag, label in (("avx2", "AVX2"), *UNITS) if flag in flags]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3 if hasattr(os, "sysconf") else 0
    return f"{os.cpu_count()} CPUs: {name}{model}" + (f"; {', '.join(units)}" if units else "") + \
        (f"; {memory:.0f} GiB" if memory else "")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (none where there is no such file)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


if __name__ == "__main__":
    print(machine())
