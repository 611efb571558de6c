"""`make bench`: every benchmark, figures and ratios printed (not timed tests).

Each suite runs in a fresh Python process, so one suite's imports, caches and garbage (a
full garbage collection in a process that already ran the core benchmark can stall a GUI
thread for 100 ms) never colour another suite's figures.
"""
from __future__ import annotations

import os
import subprocess
import sys

SUITES = [("core (open-nsfw ResNet-50)", "benchmarks.bench_core"),
          ("reference runtimes", "benchmarks.bench_runtimes"),
          ("per-layer comparison metrics", "benchmarks.bench_metrics"),
          ("GUI responsiveness", "benchmarks.bench_gui"),
          ("image-set throughput and conversion steps", "benchmarks.bench_pipeline"),
          ("conversion memory (AlexNet-size, 244 MB)", "benchmarks.bench_memory")]


def main() -> int:
    only = sys.argv[1:]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    failed = 0
    for title, mod in SUITES:
        if only and not any(o in mod for o in only):
            continue
        print(f"\n=== {title} ===", flush=True)
        code = f"import sys, {mod} as m; r = m.main(); sys.exit(0)"
        rc = subprocess.call([sys.executable, "-c", code], env=env)
        if rc != 0:
            failed += 1
            print(f"(suite {mod} failed with exit status {rc})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
