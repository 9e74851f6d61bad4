"""Coverage of ``pca``'s 95 % interval for k(delta), measured on simulated excitations with known spectra.

Each scenario (spectrum, C channels, n cases, preset) draws excitations as the sigmoid of Gaussian scores whose
covariance is Q diag(lambda) Q^T (Q a fixed random rotation, lambda scaled to a total logit variance of 2.25):

- truth: ``--truth`` independent draws of k_hat_n give E[k_hat_n] and the true 95 % spread of k_hat_n
  (2.5 % quantile rounded down to 97.5 % quantile rounded up);
- test: ``--draws`` further draws each get the interval as ``pca`` computes it (``jackknife_interval``).

A scenario passes when the interval covers E[k_hat_n] in >= 90 % of the draws, always contains the reported k, and
its mean width is <= 2 x the true spread + 1. Writes ``benchmarks/results/k_interval_coverage.{json,md}`` (or
``--out``); ``--quick`` runs a 4-scenario subset in a few seconds (the test suite runs it).

    nice -n 10 python benchmarks/k_interval_coverage.py --jobs 2   # full grid: 5 x 4 x 4 x 2 = 160 scenarios, ~15 min
    python benchmarks/k_interval_coverage.py --quick --out /tmp/q  # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nnunet_se.analysis.thresholds import PRESETS, batch_threshold, jackknife_interval

SPECTRA = ("power-0.5", "power-1", "power-2", "geometric-0.85", "step-8")
CHANNELS = (32, 64, 128, 256)
CASES = (30, 50, 100, 200)
PRESET_NAMES = ("fig3", "text")
LOGIT_VARIANCE = 2.25  # total variance of the Gaussian scores before the sigmoid
RESULTS = Path(__file__).parent / "results"


def spectrum(name: str, channels: int) -> np.ndarray:
    """Population covariance eigenvalues lambda_1..lambda_C (unnormalised) of a named spectrum."""
    i = np.arange(1, channels + 1, dtype=np.float64)
    if name.startswith("power-"):
        return i ** -float(name.split("-", 1)[1])
    if name.startswith("geometric-"):
        return float(name.split("-", 1)[1]) ** i
    if name.startswith("step-"):  # low rank plus noise: r strong components over a flat floor
        return np.where(i <= int(name.split("-", 1)[1]), 1.0, 0.02)
    raise ValueError(f"unknown spectrum {name!r}")


class Excitations:
    """Draws of (n, C) excitation matrices: sigmoid of N(0, Q diag(lambda) Q^T) scores, Q fixed per instance."""

    def __init__(self, eigen: np.ndarray, rng: np.random.Generator) -> None:
        self.scale = np.sqrt(eigen * LOGIT_VARIANCE / eigen.sum())
        self.rotation, _ = np.linalg.qr(rng.standard_normal((eigen.size, eigen.size)))
        self.rng = rng

    def draw(self, batch: int, cases: int) -> np.ndarray:
        """(batch, cases, C) excitations in (0, 1)."""
        scores = (self.rng.standard_normal((batch, cases, self.scale.size)) * self.scale) @ self.rotation.T
        return 1.0 / (1.0 + np.exp(-scores))


@dataclass
class Scenario:
    spectrum: str
    channels: int
    cases: int
    preset: str
    expected_k: float = 0.0
    true_low: int = 0
    true_high: int = 0
    coverage: float = 0.0
    contains_k: float = 0.0
    mean_width: float = 0.0
    seconds: float = 0.0

    @property
    def width_limit(self) -> float:
        return 2.0 * (self.true_high - self.true_low) + 1.0

    @property
    def passed(self) -> bool:
        return self.coverage >= 0.9 and self.contains_k == 1.0 and self.mean_width <= self.width_limit


def run_scenario(scenario: Scenario, truth: int, draws: int, seed: int, level: float = 0.95) -> Scenario:
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    source = Excitations(spectrum(scenario.spectrum, scenario.channels), rng)
    convention = PRESETS[scenario.preset]
    k_truth = np.concatenate([batch_threshold(source.draw(min(50, truth - i), scenario.cases), convention)
                              for i in range(0, truth, 50)])
    scenario.expected_k = float(k_truth.mean())
    scenario.true_low = int(np.quantile(k_truth, 0.025, method="lower"))
    scenario.true_high = int(np.quantile(k_truth, 0.975, method="higher"))
    covered, contains, widths = [], [], []
    for i, g in enumerate(source.draw(draws, scenario.cases)):
        interval = jackknife_interval(g, convention, level=level, seed=seed + i)
        covered.append(interval.low <= scenario.expected_k <= interval.high)
        contains.append(interval.low <= interval.k <= interval.high)
        widths.append(interval.high - interval.low)
    scenario.coverage = float(np.mean(covered))
    scenario.contains_k = float(np.mean(contains))
    scenario.mean_width = float(np.mean(widths))
    scenario.seconds = time.perf_counter() - start
    return scenario


def grid(quick: bool) -> list[Scenario]:
    if quick:
        return [Scenario(s, 32, n, p) for s in ("power-1", "step-8") for n, p in ((30, "fig3"), (50, "text"))]
    return [Scenario(s, c, n, p) for p in PRESET_NAMES for s in SPECTRA for c in CHANNELS for n in CASES]


def growth_table(rows: list[Scenario]) -> list[str]:
    """E[k_hat_n] against n for each spectrum, C and preset (the growth of k_hat with the number of cases)."""
    lines = ["| preset | spectrum | C | " + " | ".join(f"n = {n}" for n in CASES) + " | n = 200 / n = 50 |",
             "|---|---|---|" + "---:|" * (len(CASES) + 1)]
    keyed = {(r.preset, r.spectrum, r.channels, r.cases): r.expected_k for r in rows}
    for preset in PRESET_NAMES:
        for name in SPECTRA:
            for c in CHANNELS:
                values = [keyed.get((preset, name, c, n)) for n in CASES]
                if None in values:
                    continue
                ratio = values[-1] / values[1] if values[1] else float("nan")
                lines.append(f"| {preset} | {name} | {c} | " + " | ".join(f"{v:.1f}" for v in values)
                             + f" | {ratio:.2f} |")
    return lines


def write(rows: list[Scenario], settings: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    passed = sum(r.passed for r in rows)
    records = [{**asdict(r), "width_limit": r.width_limit, "passed": r.passed} for r in rows]
    (out / "k_interval_coverage.json").write_text(json.dumps(
        {"settings": settings, "passed": passed, "scenarios": len(rows), "rows": records}, indent=1) + "\n")
    worst = min(rows, key=lambda r: r.coverage)
    lines = [
        "# Coverage of the k(delta) interval (delete-d jackknife of the cumulative ratios, nominal 95 %)",
        "",
        f"Command: `{settings['command']}`. Settings: {settings['draws']} draws per scenario, {settings['truth']} "
        f"independent draws for the truth, seed {settings['seed']}, {settings['machine']}, "
        f"{settings['seconds']:.0f} s.",
        "",
        f"**{passed} of {len(rows)} scenarios pass** (covers E[k_hat_n] in >= 90 % of draws, always contains k, "
        f"mean width <= 2 x true 95 % spread + 1). Lowest coverage {worst.coverage:.2f} ({worst.preset}, "
        f"{worst.spectrum}, C = {worst.channels}, n = {worst.cases}); widest interval relative to its limit "
        f"{max(r.mean_width / r.width_limit for r in rows):.2f} of the limit.",
        "",
        "| preset | spectrum | C | n | E[k_hat_n] | true 95 % range | coverage | contains k | mean width | "
        "width limit | pass |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    lines += [f"| {r.preset} | {r.spectrum} | {r.channels} | {r.cases} | {r.expected_k:.2f} | "
              f"{r.true_low}-{r.true_high} | {r.coverage:.2f} | {r.contains_k:.2f} | {r.mean_width:.2f} | "
              f"{r.width_limit:.0f} | {'yes' if r.passed else '**no**'} |" for r in rows]
    lines += ["", "## Growth of k_hat with the number of cases (E[k_hat_n] from the truth draws)", "",
              *growth_table(rows)]
    (out / "k_interval_coverage.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 small scenarios (C = 32), 30 draws: seconds")
    p.add_argument("--draws", type=int, help="draws per scenario that get an interval (default 150, quick 30)")
    p.add_argument("--truth", type=int, help="independent draws for E[k_hat_n] (default 300, quick 200)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (results do not depend on it)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    draws = args.draws or (30 if args.quick else 150)
    truth = args.truth or (200 if args.quick else 300)
    start = time.perf_counter()
    scenarios = grid(args.quick)
    seeds = [args.seed + 1000 * i for i in range(len(scenarios))]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = []
        for r in pool.map(run_scenario, scenarios, [truth] * len(scenarios), [draws] * len(scenarios), seeds):
            rows.append(r)
            print(f"{r.preset} {r.spectrum} C={r.channels} n={r.cases}: E[k]={r.expected_k:.2f} "
                  f"range {r.true_low}-{r.true_high} coverage {r.coverage:.2f} width {r.mean_width:.2f}"
                  f"/{r.width_limit:.0f} {'ok' if r.passed else 'FAIL'} ({r.seconds:.1f} s)", flush=True)
    settings = {"command": "python benchmarks/k_interval_coverage.py" + (" --quick" if args.quick else "")
                + (f" --draws {args.draws}" if args.draws else "") + (f" --truth {args.truth}" if args.truth else ""),
                "jobs": args.jobs,
                "draws": draws, "truth": truth, "seed": args.seed, "level": 0.95, "logit_variance": LOGIT_VARIANCE,
                "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
                "seconds": time.perf_counter() - start}
    write(rows, settings, args.out)
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
