"""Load shapes the planner was not tuned on, written as Azure-format CSVs for
`python -m bench.autoscale --trace NAME=PATH`.

    python -m bench.shapes --out .local/shapes        # writes the CSVs, prints the --trace args
    make bench-shapes                                  # writes them and runs the benchmark on them

The autoscaling benchmark's own traces are the ones the planner was developed against; a
result tuned to them says little about a load nobody looked at. These shapes are one hour
each, Poisson arrivals under a rate that follows the shape (thinning), token lengths drawn
from the public Azure conversation trace (so the replicas' capacity is the same as there):

- `ramp_hold`: 6 -> 22 req/s over 20 minutes, 22 for 20 minutes, then 8;
- `spiky`: 10 req/s with seven 90-second spikes to 20 at random times (shorter than any start);
- `sawtooth`: 6 -> 20 req/s over 20 minutes, then back to 6 at once, three times;
- `slow_drift`: 10 -> 16 req/s over the hour with a slow +-1.5 req/s wave;
- `conv_rev`: the public trace's per-minute rate at 3x (as the benchmark replays it), reversed
  in time.

Deterministic for a seed. The warm-up the benchmark runs first is each trace's last 30 minutes.

Attribution (CC BY 4.0) for the token lengths and `conv_rev`'s shape: Azure LLM inference trace
2023 (Azure Public Dataset). Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Inigo
Goiri, Saeed Maleki, Ricardo Bianchini, "Splitwise: Efficient generative LLM inference using
phase splitting", ISCA 2024.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from testbed.sim import traces as T

from .autoscale import DEFAULT_AZURE

HOUR = 3600.0
EPOCH = datetime(2024, 1, 1)
SHAPES = ("ramp_hold", "spiky", "sawtooth", "slow_drift", "conv_rev")


def _write(
    path: Path,
    rate: Callable[[float], float],
    length: float,
    peak: float,
    lengths: list[tuple[int, int]],
    rng: random.Random,
) -> int:
    """Poisson arrivals at `rate(t)` <= `peak` on [0, length) by thinning; returns the count."""
    t, n = 0.0, 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        while True:
            t += rng.expovariate(peak)
            if t >= length:
                return n
            if rng.random() * peak > rate(t):
                continue
            prompt, out = lengths[rng.randrange(len(lengths))]
            stamp = (EPOCH + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f")
            w.writerow([stamp, prompt, out])
            n += 1


def shapes(src: T.Trace, seed: int) -> dict[str, tuple[Callable[[float], float], float, float]]:
    """name -> (rate(t) in req/s, length in seconds, the rate's upper bound); `src` is the
    public trace (conv_rev follows its per-minute rate)."""
    rng = random.Random(seed)
    spikes = sorted(rng.uniform(0.0, HOUR - 120.0) for _ in range(7))
    per_min = [0] * (int(src.duration // 60) + 1)
    for r in src.requests:
        per_min[int(r.arrival // 60)] += 1
    end = src.duration

    def ramp_hold(t: float) -> float:
        m = t / 60.0
        return 6.0 + 16.0 * m / 20.0 if m < 20 else (22.0 if m < 40 else 8.0)

    def spiky(t: float) -> float:
        return 20.0 if any(s <= t < s + 90.0 for s in spikes) else 10.0

    def sawtooth(t: float) -> float:
        return 6.0 + 14.0 * (t % 1200.0) / 1200.0

    def slow_drift(t: float) -> float:
        return 10.0 + 6.0 * t / HOUR + 1.5 * math.sin(t / 170.0)

    def conv_rev(t: float) -> float:
        b = min(max(int((end - t) // 60), 0), len(per_min) - 1)
        return 3.0 * per_min[b] / 60.0

    return {
        "ramp_hold": (ramp_hold, HOUR, 23.0),
        "spiky": (spiky, HOUR, 21.0),
        "sawtooth": (sawtooth, HOUR, 21.0),
        "slow_drift": (slow_drift, HOUR, 18.0),
        "conv_rev": (conv_rev, end, 3.0 * max(per_min) / 60.0 + 1.0),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.shapes", description=__doc__)
    ap.add_argument("--out", default=".local/shapes", help="folder for the CSVs")
    ap.add_argument("--azure", default=str(DEFAULT_AZURE), help="the public trace (token lengths)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    azure = Path(a.azure)
    if not azure.exists():
        print(f"{azure} not found: the shapes take their token lengths from it", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    src = T.load_azure_trace(azure)
    lengths = [(r.prompt_tokens, r.max_tokens) for r in src.requests]
    rng = random.Random(a.seed)
    args = []
    for name, (rate, length, peak) in shapes(src, a.seed).items():
        path = out / f"{name}.csv"
        n = _write(path, rate, length, peak, lengths, rng)
        print(f"{name}: {n} requests over {length / 60:.0f} min -> {path}", file=sys.stderr)
        args.append(f"--trace {name}={path}")
    print(" ".join(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
