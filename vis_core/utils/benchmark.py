"""Measurement helpers of the benchmark scripts: process memory, and cases run in fresh processes.

Memory figures are in MiB. Host figures come from the kernel (``/proc/self/status``: ``VmRSS`` now,
``VmHWM`` the peak, which ``reset_peak_rss`` sets back to the current value), or from
``getrusage`` where ``/proc`` is missing. A case measured in a process of its own cannot have its
peak hidden by another's: ``run_fresh`` runs a command that ends by ``print_result(dict)`` and
returns that dict.
"""

import json
import resource
import subprocess
from typing import List

__all__ = ["rss_mb", "peak_rss_mb", "reset_peak_rss", "peak_memory_mb", "print_result", "run_fresh"]

RESULT_PREFIX = "RESULT "


def _status_mb(field: str):
    """A memory field of /proc/self/status in MiB, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident memory of this process now."""
    now = _status_mb("VmRSS")
    if now is None:
        raise RuntimeError("the current resident memory needs /proc/self/status (Linux)")
    return now


def peak_rss_mb() -> float:
    """Peak resident memory of this process (since it started or since ``reset_peak_rss``)."""
    peak = _status_mb("VmHWM")
    if peak is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return peak


def reset_peak_rss() -> bool:
    """Set the peak resident memory back to the current one; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: str) -> float:
    """Peak memory of the device: CUDA memory allocated by torch on cuda, else peak host RSS."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def print_result(result: dict) -> None:
    """End a measuring process: one line that ``run_fresh`` reads back."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_fresh(command: List[str]) -> dict:
    """Run ``command`` (a process that calls ``print_result``) to its end; returns its result.

    Raises:
        RuntimeError: the process failed or printed no result; the message holds its stderr's end.
    """
    proc = subprocess.run(command, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(command[:4])} ... failed (exit code {proc.returncode}, "
            f"{'no' if not lines else 'a'} result):\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])
