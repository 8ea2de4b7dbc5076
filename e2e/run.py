#!/usr/bin/env python3
"""Runs pochta's end-to-end scenarios against the built daemon.

    python3 e2e/run.py            # every e2e/test_*.py
    python3 e2e/run.py delivery   # just e2e/test_delivery.py (several names allowed)
    python3 e2e/run.py --list

Each scenario file defines run(s), s being a harness.Scenario. Prints PASS/FAIL
per check, then "e2e: N passed, N failed"; exits 0 only when every check held
and at least one ran. The daemon binary is $POCHTA_BIN (default bin/pochta).
"""
import glob
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def scenarios():
    found = {}
    for path in sorted(glob.glob(os.path.join(harness.E2E_DIR, "test_*.py"))):
        found[os.path.basename(path)[len("test_"):-len(".py")]] = path
    return found


def load(name, path):
    spec = importlib.util.spec_from_file_location(f"e2e_test_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv):
    all_ = scenarios()
    if "--list" in argv:
        print("\n".join(all_))
        return 0
    names = [a for a in argv if not a.startswith("-")] or list(all_)
    results = harness.Results()
    unknown = [n for n in names if n not in all_]
    for n in unknown:
        results.record(f"scenario {n} exists", False, "known: " + ", ".join(all_))
    if not os.path.exists(harness.binary()):
        results.record("daemon binary exists", False,
                       f"{harness.binary()} missing: go build -o bin/pochta ./cmd/pochta, or set POCHTA_BIN")
        names = []
    start = time.monotonic()
    for n in names:
        if n in unknown:
            continue
        t0 = time.monotonic()
        print(f"== {n}", flush=True)
        s = harness.Scenario(n, results)
        try:
            load(n, all_[n]).run(s)
        except Exception as e:  # one scenario crashing is one failure, the rest still run
            s.check("scenario ran to the end", False, f"{type(e).__name__}: {e}")
        finally:
            s.close()
        print(f"   ({time.monotonic() - t0:.1f}s)", flush=True)
    if results.failed:
        print("failing:\n  " + "\n  ".join(results.failed))
    print(f"(total {time.monotonic() - start:.1f}s)")
    print(f"e2e: {len(results.passed)} passed, {len(results.failed)} failed")
    return 0 if results.passed and not results.failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
