"""`make bench`: every benchmark, figures and ratios printed (not timed tests)."""
from __future__ import annotations

import importlib
import sys
import traceback

SUITES = [("core (open-nsfw ResNet-50)", "benchmarks.bench_core"),
          ("reference runtimes", "benchmarks.bench_runtimes"),
          ("GUI responsiveness", "benchmarks.bench_gui")]


def main() -> int:
    only = sys.argv[1:]
    failed = 0
    for title, mod in SUITES:
        if only and not any(o in mod for o in only):
            continue
        print(f"\n=== {title} ===", flush=True)
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            print(f"(skipped: {e})")
            continue
        try:
            m.main()
        except Exception:  # noqa: BLE001
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
