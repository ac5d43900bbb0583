"""Soak: 1,000 rooms with churn for 10 minutes; is memory flat and does everything go away?

    .venv/bin/python bench/soak.py [--rooms 1000] [--minutes 10]

Starts one `roomd serve` process, drives it with `roomd-load` (4 members per
room, heartbeats every 10 s, 10 leave-and-rejoin events per second, 2 %
crashed members), samples the server's resident memory every 30 s, and once
the load has left, reads how many rooms and room actors remain. Prints the
RSS series, its growth after the first third (the warm-up), and the counts.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, rss_bytes, start_roomd

SAMPLE_EVERY = 30.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    duration = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_roomd(port, Path(tmp), {})
        try:
            baseline_rss = rss_bytes(server.pid)
            report = Path(tmp) / "soak.json"
            load = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "roomd.loadtest.cli",
                    "--url",
                    base,
                    "--rooms",
                    str(args.rooms),
                    "--members",
                    "4",
                    "--duration",
                    str(duration),
                    "--heartbeat",
                    "10",
                    "--churn",
                    "10",
                    "--crash-fraction",
                    "0.02",
                    "--ramp",
                    "60",
                    "--no-progress",
                    "--report",
                    str(report),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            samples: list[tuple[float, int]] = []
            started = time.monotonic()
            while load.poll() is None:
                samples.append((time.monotonic() - started, rss_bytes(server.pid)))
                time.sleep(SAMPLE_EVERY)
            time.sleep(45)  # crashed members time out, their rooms empty
            metrics = httpx.get(f"{base}/metrics").text
            tree = httpx.get(f"{base}/debug/actors?limit=0").json()["tree"]
            final_rss = rss_bytes(server.pid)
            result = json.loads(report.read_text())
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    print(f"soak: {args.rooms} rooms x 4 members, {args.minutes:g} min, churn 10/s, 2 % crashed")
    print(
        f"  load: {result['requests']} requests ({result['requests_per_second']:.0f}/s), "
        f"eviction checks passed: {result['evictions']['passed']}, "
        f"wrong evictions {result['evictions']['wrong_evictions']}, "
        f"transport failures {result['transport_failures']}"
    )
    print("  RSS (MB) every 30 s: " + ", ".join(f"{rss / 2**20:.0f}" for _, rss in samples))
    warm = [rss for at, rss in samples if at >= duration / 3]
    if warm:
        print(
            f"  after warm-up: min {min(warm) / 2**20:.1f} MB, max {max(warm) / 2**20:.1f} MB, "
            f"last {warm[-1] / 2**20:.1f} MB (growth {(warm[-1] - warm[0]) / 2**20:+.1f} MB)"
        )
    rooms_left = sum(d["rooms"] for d in tree["children"][1:])
    gauges = [line for line in metrics.splitlines() if line.startswith(("roomd_rooms{", "roomd_members{"))]
    print(
        f"  after the load left: {rooms_left} room actors, RSS {final_rss / 2**20:.1f} MB "
        f"(baseline {baseline_rss / 2**20:.1f} MB); " + "; ".join(gauges)
    )


if __name__ == "__main__":
    main()
