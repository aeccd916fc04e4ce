"""Hardware and environment facts, so a teammate can tell where a run ran and reproduce it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from labclient.errors import DeviceUnavailable
from labclient.files import git_commit


def resolve_device(requested: str) -> str:
    """`auto` picks CUDA, then MPS, then CPU. An explicit accelerator that is absent is an error."""
    import torch

    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return next(name for name in ("cuda", "mps", "cpu") if available[name])
    if requested not in available:
        raise DeviceUnavailable(f"unknown device {requested!r}", "use auto, cpu, cuda or mps")
    if not available[requested]:
        build = "a CPU-only build" if requested == "cuda" and torch.version.cuda is None else "this machine"
        raise DeviceUnavailable(
            f"--device {requested} was requested but {requested.upper()} is not available ({build} of torch "
            f"{torch.__version__})",
            "use --device cpu, or --device auto to pick the best available",
        )
    return requested


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gpu_facts(device: str) -> dict[str, str]:
    import torch

    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    facts = {
        "gpu.name": props.name,
        "gpu.memory_gb": f"{props.total_memory / 1e9:.1f}",
        "gpu.count": str(torch.cuda.device_count()),
        "gpu.cuda_version": str(torch.version.cuda),
        "gpu.capability": f"{props.major}.{props.minor}",
    }
    driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if driver:
        facts["gpu.driver"] = driver.splitlines()[0]
    return facts


def _run(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect(device: str, code_path: Path | None = None) -> dict[str, str]:
    """Flat string facts, logged as `lab.hw.*` tags and as environment.json."""
    import torch

    memory = total_memory_bytes()
    facts = {
        "device": device,
        "cpu.model": cpu_model(),
        "cpu.cores": str(os.cpu_count()),
        "cpu.threads_used": str(torch.get_num_threads()),
        "memory_gb": f"{memory / 1e9:.1f}" if memory else "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mlflow": _version("mlflow"),
        "labclient": _version("lab-platform"),
        "hostname": platform.node(),
    }
    facts.update(gpu_facts(device))
    if device == "mps":
        facts["gpu.name"] = "Apple MPS"
    commit = git_commit(code_path) if code_path else None
    if commit:
        facts["git_commit"] = commit
    facts["python_executable"] = sys.executable
    return facts
