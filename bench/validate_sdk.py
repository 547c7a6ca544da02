"""Time the SDK envelope validation alone: how much of a batch request it costs.

Usage: python bench/validate_sdk.py [--batches 2000] [--repeat 5]
Validates 20-event batches from ../shared/bench/gen.py (generated into a temp dir) and prints
microseconds per batch and per event, best of `--repeat` passes, as `VALIDATE_JSON {...}`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.schemas.sdk import batch_validate  # noqa: E402

GEN = ROOT.parent / "shared" / "bench" / "gen.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(GEN), tmp, "--secret", "x", "--n", "1", "--batches", str(args.batches)], check=True
        )
        bodies = Path(tmp, "batch.txt").read_bytes().splitlines()
    # The slow path: every event of the batch has one wrong field, so each is decoded twice and explained.
    invalid = [body.replace(b'"platform":"', b'"platform":"web-') for body in bodies]
    events = len(bodies) * len(json.loads(bodies[0])["events"])
    figures: dict = {"batches": len(bodies), "events_per_batch": events // len(bodies)}
    for name, sample, expect_errors in (("valid", bodies, False), ("all_invalid", invalid, True)):
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            for body in sample:
                result = batch_validate(body, max_events=500)
            best = min(best, time.perf_counter() - start)
        assert bool(result.errors) == expect_errors
        figures[f"{name}_us_per_batch"] = round(best / len(sample) * 1e6, 1)
        figures[f"{name}_us_per_event"] = round(best / events * 1e6, 2)
    figures["load_avg_1m"] = os.getloadavg()[0]
    print("VALIDATE_JSON " + json.dumps(figures))


if __name__ == "__main__":
    main()
