"""Process memory and scaling helpers shared by the benchmarks (tests/benchmarks/scaling.py and the
closed-set / open-set scaling reports): Linux ``/proc/self/status`` fields and the peak-RSS reset."""

from __future__ import annotations

import numpy as np


def status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MB; None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs); False if not."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def fit_exponent(ns, seconds) -> float | None:
    """Least-squares slope of log(seconds) on log(n); None with fewer than two sizes."""
    if len(ns) < 2:
        return None
    return float(np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(seconds, float)), 1)[0])
