"""What a benchmark ran on: CPU model and features, cores, GPU, library versions, load."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys

LIBRARIES = ("numpy", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "onnx", "pyzmq", "torch",
             "torchvision", "timm", "tensorrt", "cuda-python", "scikit-learn")
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    return {"model": model, "logical_cores": os.cpu_count(), "usable_cores": affinity,
            "flags": [f for f in CPU_FLAGS if f in flags], "machine": platform.machine()}


def gpu_info() -> list[dict]:
    """GPUs as nvidia-smi names them; [] where there is none (or no driver)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for lib in LIBRARIES:
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            pass
    try:
        out["surface-inspector"] = md.version("surface-inspector")
    except md.PackageNotFoundError:
        pass
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def hardware() -> dict:
    import onnxruntime as ort

    return {"cpu": cpu_info(), "gpus": gpu_info(), "os": f"{platform.system()} {platform.release()}",
            "onnxruntime_providers": ort.get_available_providers(), "versions": versions()}


def describe(hw: dict) -> str:
    cpu = hw["cpu"]
    gpu = ", ".join(g["name"] for g in hw["gpus"]) or "no GPU"
    flags = "/".join(f for f in cpu["flags"] if f.startswith(("avx", "amx"))) or "no AVX"
    v = hw["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "onnxruntime-gpu", "torch", "tensorrt") if k in v)
    return f"{cpu['model']}, {cpu['usable_cores']} cores ({flags}); {gpu}; {libs}"
