"""System metrics (`system/cpu_utilization_percentage`, memory, disk, network, and the GPU when there is one),
sampled by MLflow's own monitors and logged through the run's recorder, so MLflow's "System metrics" tab draws them
while the journal keeps them like every other point.

MLflow's SystemMetricsMonitor would log them itself, from a thread of the training process, over its own client;
here only the sampling runs in that thread (psutil, and NVML for a GPU), and the sender process sends the points.
MLflow's environment variables decide as they do for MLflow: MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING (labclient train
samples unless it says false) and MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL (seconds; default 2 here, as training
runs on a laptop often last under a minute).
"""

from __future__ import annotations

import logging
import os
import threading

PREFIX = "system/"
DEFAULT_INTERVAL_S = 2.0
_FALSE = ("false", "0", "no", "off")


def wanted(default: bool) -> bool:
    """MLflow's MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING when it is set, else `default`."""
    value = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
    return default if value is None or not value.strip() else value.strip().lower() not in _FALSE


def interval() -> float:
    value = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "")
    try:
        return max(float(value), 0.05) if value.strip() else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


class SystemSampler:
    """Samples every `interval()` seconds while the block runs, and logs one averaged point per sample."""

    def __init__(self, run):
        self.run = run
        self.every = interval()
        self.monitors = _monitors()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps = 0

    def __enter__(self) -> SystemSampler:
        if self.monitors:
            self._thread = threading.Thread(target=self._loop, name="lab-system-metrics", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            metrics: dict[str, float] = {}
            try:
                for monitor in self.monitors:
                    monitor.collect_metrics()
                    metrics.update(monitor.aggregate_metrics())
                    monitor.clear_metrics()
            except Exception as err:  # a sensor that fails (a GPU gone away) must never stop the training
                logging.getLogger("labclient").debug("system metrics stopped: %s", err)
                return
            self.run.log_metrics({PREFIX + key: float(value) for key, value in metrics.items()}, step=self.steps)
            self.steps += 1


def _monitors() -> list:
    """MLflow's monitors: CPU and memory, disk, network, and a GPU's if NVML (or ROCm) answers; none without
    psutil."""
    try:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor
    except ImportError:  # psutil is missing: a lean install without system metrics
        return []
    monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    for module, name in (("gpu_monitor", "GPUMonitor"), ("rocm_monitor", "ROCMMonitor")):
        try:
            import importlib

            monitors.append(getattr(importlib.import_module(f"mlflow.system_metrics.metrics.{module}"), name)())
            break
        except Exception:  # no GPU, or no NVML/ROCm library: CPU figures only
            continue
    return monitors
