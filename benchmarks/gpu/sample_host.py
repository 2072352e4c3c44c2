"""Sample the host once a second, as nvidia-smi samples the GPU, for figure 9's timeline.

Writes CSV lines to stdout until killed: the time, the share of all CPUs busy and in I/O
wait, the MiB read from and written back to disk in that second, the dirty page cache
waiting to be written and the part being written, and the memory available.  (The run
store's removal on an H200 machine waited on the disk for 9.5 s with nothing written: the
reads tell whether the file system was reading its metadata meanwhile.)  Reads only /proc
(Linux); run by benchmarks/gpu/check.sh.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def _cpu() -> tuple[int, int, int]:
    """Jiffies of all CPUs since boot: total, idle, I/O wait."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[3], fields[4]


def _vmstat() -> dict[str, int]:
    lines = Path("/proc/vmstat").read_text().splitlines()
    return {key: int(value) for key, value in (line.split() for line in lines)}


def _available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return -1


def main() -> None:
    print(
        "time,cpu_busy_pct,cpu_iowait_pct,read_mib_per_s,written_mib_per_s,dirty_mib,writeback_mib,available_mib",
        flush=True,
    )
    cpu, vm = _cpu(), _vmstat()
    while True:
        time.sleep(1.0)
        cpu_now, vm_now = _cpu(), _vmstat()
        total = max(1, cpu_now[0] - cpu[0])
        busy = 100 * (total - (cpu_now[1] - cpu[1]) - (cpu_now[2] - cpu[2])) / total
        iowait = 100 * (cpu_now[2] - cpu[2]) / total
        read = (vm_now["pgpgin"] - vm["pgpgin"]) / 1024  # pgpgin and pgpgout count KiB
        written = (vm_now["pgpgout"] - vm["pgpgout"]) / 1024
        dirty = vm_now["nr_dirty"] * 4 // 1024  # 4 KiB pages
        writeback = vm_now["nr_writeback"] * 4 // 1024
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(
            f"{stamp},{busy:.0f},{iowait:.0f},{read:.0f},{written:.0f},{dirty},{writeback},{_available_mib()}",
            flush=True,
        )
        cpu, vm = cpu_now, vm_now


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
