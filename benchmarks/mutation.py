"""Mutation testing of the core modules: single-token changes that a user would feel, tried one at a time.

Core set (the code whose numbers end up in a user's results): the recalibration modules (``nnunet_se/modules``),
the converter's image/mask decoding and split rules (``conversion/images.py``, ``conversion/splits.py``), the
statistics and excitation thresholds of the analysis (``analysis/stats.py``, ``analysis/thresholds.py``) and the
paper network and loss (``trainers/paper_network.py``, ``trainers/paper_loss.py``). Command-line plumbing,
nnU-Net glue and plotting are left out: their bugs show as errors, not as silently wrong numbers.

Mutants (one token each, in code, never in strings or comments): comparison flips (``<`` <-> ``<=``, ``>`` <->
``>=``, ``==`` <-> ``!=``), arithmetic swaps (``+`` <-> ``-``, ``*`` <-> ``/``, ``//`` -> ``*``, ``**`` -> ``*``),
``and`` <-> ``or``, ``True`` <-> ``False``, integers ``n -> n + 1`` and floats ``x -> 10 x``. Each runs only the
test files that cover its module (``TESTS``; slow and real-data tests deselected), stopping at the first failure,
with a timeout of 5x the unmutated run + 30 s (a timeout counts as killed; the margin is for a loaded machine).

How the mutated code is imported: the work happens in a scratch copy of the checkout (tracked and untracked,
non-ignored files), never in the checkout itself. The editable install maps ``nnunet_se.conversion`` etc. to the
checkout's folders, so the copy gets its own package-dir mapping: ``<copy>/_pkg/nnunet_se/`` holds symlinks to
``<copy>/nnunet_se/*`` plus ``conversion``, ``trainers``, ``analysis`` (from ``pyproject.toml``), and
``_pkg`` leads ``PYTHONPATH``; the path finder then resolves every ``nnunet_se.*`` module in the copy before the
editable finder is asked (checked at start-up). Bytecode writing is off, so a same-size mutant written within the
same second can never run a stale ``.pyc``. A parent process imports torch, scipy, sklearn and pytest once and
forks one child per mutant (copy-on-write: no per-mutant interpreter start-up).

    nice -n 15 .venv/bin/python benchmarks/mutation.py --sample 150      # seeded sample; writes the results
    .venv/bin/python benchmarks/mutation.py --named                      # the six mutants of the test review
    .venv/bin/python benchmarks/mutation.py --modules conversion/splits.py --list

Writes ``benchmarks/results/mutation.{json,md}`` (score = killed / run, survivors with their line).
"""

from __future__ import annotations

import argparse
import io
import json
import keyword
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODULE_TESTS = [f"tests/test_modules_{n}.py"
                for n in ("constants", "cse", "fca", "mono", "running_stats", "srm", "common", "ddp")]
# module -> the test files that cover it, most specific (and fastest to fail) first
TESTS: dict[str, list[str]] = {
    "nnunet_se/modules/common.py": ["tests/test_common_boundaries.py", *MODULE_TESTS],
    "nnunet_se/modules/cse.py": ["tests/test_modules_cse.py", "tests/test_modules_constants.py",
                                 "tests/test_modules_common.py"],
    "nnunet_se/modules/sse.py": ["tests/test_modules_cse.py", "tests/test_modules_common.py"],
    "nnunet_se/modules/fca.py": ["tests/test_modules_fca.py", "tests/test_modules_constants.py",
                                 "tests/test_modules_common.py"],
    "nnunet_se/modules/srm.py": ["tests/test_modules_srm.py", "tests/test_srm_boundaries.py",
                                 "tests/test_modules_common.py", "tests/test_modules_ddp.py"],
    "nnunet_se/modules/mono.py": ["tests/test_modules_mono.py", "tests/test_mono_boundaries.py",
                                  "tests/test_modules_constants.py", "tests/test_modules_running_stats.py",
                                  "tests/test_modules_common.py", "tests/test_modules_ddp.py"],
    "nnunet_se/modules/registry.py": ["tests/test_modules_common.py", "tests/test_extending.py"],
    "nnunet_se/modules/singularity.py": ["tests/test_modules_mono.py", "tests/test_modules_constants.py",
                                         "tests/test_modules_running_stats.py", "tests/test_modules_common.py"],
    "conversion/images.py": ["tests/test_conversion_image_rules.py", "tests/test_images_boundaries.py",
                             "tests/test_convert_units.py"],
    "conversion/splits.py": ["tests/test_splits_authors.py", "tests/test_convert_units.py",
                             "tests/test_splits_boundaries.py"],
    "analysis/stats.py": ["tests/test_analysis_stats.py", "tests/test_stats_boundaries.py",
                          "tests/test_analysis_table.py"],
    "analysis/thresholds.py": ["tests/test_analysis_thresholds.py", "tests/test_thresholds_boundaries.py",
                               "tests/test_analysis_k_interval.py"],
    "trainers/paper_network.py": ["tests/test_paper_parity.py", "tests/test_trainers_paper.py"],
    "trainers/paper_loss.py": ["tests/test_paper_parity.py"],
}
# The six single-point changes that the test review found passing the suite: (file, code, mutated code).
NAMED = [
    ("nnunet_se/modules/singularity.py", "EPS = 1e-7", "EPS = 1e-5"),
    ("nnunet_se/modules/cse.py", '"original": {"reduction": 16', '"original": {"reduction": 15'),
    ("nnunet_se/modules/fca.py", "TOP16_V = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6,",
     "TOP16_V = (0, 1, 0, 5, 2, 0, 2, 0, 0, 5,"),
    ("trainers/paper_network.py", "std = math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD",
     "std = math.sqrt(2.0 / fan_in)"),
    ("conversion/images.py", "lambda v: v >= threshold", "lambda v: v > threshold"),
    ("conversion/splits.py", "max(1, int(AUTHORS_DEV_FRACTION * n))", "max(1, round(AUTHORS_DEV_FRACTION * n))"),
]
# Survivors that cannot change behaviour, with the reason: (source line, original, mutated) -> reason; reported, not
# scored.
EQUIVALENT = {
    ("fold_of = np.full(n, -1)", "1", "2"): "placeholder fold, overwritten for every case before it is read",
    ("x = np.zeros((n, 1))", "1", "2"): "placeholder features: sklearn's splitters read only their number of rows",
    ("return [(r, w) for r, w in zip(radii, ols_weights(radii), strict=True) if abs(w) >= 1e-12]", ">=", ">"):
        "no least-squares weight of integer radii is exactly 1e-12",
    ("return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)", ">", ">="):
        "numpy's std with ddof 1 of a single value is NaN as well",
    ("if len(values) > 2 or not set(values) <= {0, top} or top not in (0, 1, 255, 65535):", "2", "3"):
        "three distinct values are never a subset of {0, top}, so the next test rejects them",
    ("if tuple(x.shape[2:]) != self.dct_size:", "2", "3"):
        "adaptive average pooling of a map to its own size is the identity (one element per bin), so pooling always "
        "gives the same values",
    ("return [255 if foreground(v) else 0 for v in range(256)]", "255", "256"):
        "the table only maps L images, and Pillow clips an 8-bit point table to 0..255: 256 is written as 255",
    ("return cumulative_ratio(weights), np.count_nonzero(weights > 0.0, axis=-1)", "-", "+"):
        "weights are always (batch, components): axis 1 is axis -1",
    ("rank = np.count_nonzero(weights > 0.0, axis=-1)", "-", "+"):
        "weights are always (batch, components): axis 1 is axis -1",
    ("zero = ratio[..., -1] == 0.0 if m else np.ones(ratio.shape[:-1], bool)", "-", "+"):
        "the branch runs only for m = 0 components, which no spectrum has (min(n, C) >= 1)",
    **{(f'def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any)'
        f'{tail}', "2", "3"): "no parameter count depends on the number of spatial axes"
       for tail in (" -> int:", "")},
}
OPERATORS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-", "-": "+", "*": "/",
             "/": "*", "//": "*", "**": "*"}
NAMES = {"and": "or", "or": "and", "True": "False", "False": "True"}
PREIMPORTS = ("torch", "numpy", "scipy.stats", "sklearn.model_selection", "PIL.Image", "pandas", "matplotlib",
              "pytest", "nnunetv2.training.nnUNetTrainer.nnUNetTrainer")


@dataclass
class Mutant:
    path: str  # repository-relative
    line: int
    col: int
    original: str
    mutated: str
    source_line: str
    status: str = "pending"  # killed | survived | timeout | error
    seconds: float = 0.0
    killed_by: str = ""  # the first failing test


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and (root / p).is_file()]


def package_dirs(pyproject: Path) -> dict[str, str]:
    """``[tool.setuptools.package-dir]`` of ``pyproject.toml`` (package -> folder); no TOML reader on Python 3.10."""
    section = pyproject.read_text().split("[tool.setuptools.package-dir]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^"([\w.]+)"\s*=\s*"([^"]+)"', section, flags=re.M))


def make_copy(root: Path, work: Path) -> Path:
    """Scratch copy of the checkout plus ``_pkg``, its own package-dir mapping (symlinks); returns ``_pkg``."""
    for rel in tracked_files(root):
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
    mapping = package_dirs(root / "pyproject.toml")
    pkg = work / "_pkg"
    top = pkg / "nnunet_se"
    top.mkdir(parents=True)
    for entry in (work / mapping["nnunet_se"]).iterdir():
        (top / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        if name != "nnunet_se":
            (top / name.split(".", 1)[1]).symlink_to(work / folder)
    return pkg


def check_imports(work: Path, env: dict[str, str]) -> None:
    """Every mapped subpackage must import from the copy, not through the editable install."""
    code = ("import nnunet_se, nnunet_se.modules, nnunet_se.conversion, nnunet_se.trainers, nnunet_se.analysis as a;"
            "import sys; print('\\n'.join(m.__path__[0] for n, m in sys.modules.items() if n.startswith('nnunet_se')"
            " and hasattr(m, '__path__')))")
    paths = subprocess.run([sys.executable, "-c", code], cwd=work / "_pkg", env=env, check=True, capture_output=True,
                           text=True).stdout.split()
    outside = [p for p in paths if not str(Path(p).resolve()).startswith(str(work.resolve()))]
    if outside or not paths:
        raise SystemExit(f"mutation: the copy imports code from outside {work}: {outside}")


def code_tokens(source: str) -> list[tokenize.TokenInfo]:
    """Tokens outside strings, comments and return annotations."""
    keep, in_return_annotation = [], False
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.OP and tok.string == "->":
            in_return_annotation = True
        elif in_return_annotation and tok.type == tokenize.OP and tok.string == ":":
            in_return_annotation = False
        elif not in_return_annotation:
            keep.append(tok)
    return keep


def _is_binary(previous: tokenize.TokenInfo | None) -> bool:
    """Whether an operator after ``previous`` is binary (not ``*args``/``**kwargs`` unpacking or a unary sign)."""
    if previous is None:
        return False
    if previous.type in (tokenize.NUMBER, tokenize.STRING):
        return True
    if previous.type == tokenize.NAME:
        return not keyword.iskeyword(previous.string) or previous.string in ("True", "False", "None")
    return previous.string in (")", "]", "}")


def mutants_of(rel: str, source: str) -> list[Mutant]:
    """Every mutant of ``source``. Left out as equivalent or meaningless: ``*``/``**`` unpacking, ``strict=`` and
    ``inplace=`` flags, lines that only raise or log."""
    lines = source.splitlines()
    out = []
    tokens = code_tokens(source)
    for i, tok in enumerate(tokens):
        (row, col), text = tok.start, tok.string
        previous = tokens[i - 1] if i else None
        replacements: list[str] = []
        if tok.type == tokenize.OP and text in OPERATORS:
            if text in ("*", "**", "/", "//") and not _is_binary(previous):
                continue
            replacements = [OPERATORS[text]]
        elif tok.type == tokenize.NAME and text in NAMES:
            if i >= 2 and tokens[i - 1].string == "=" and tokens[i - 2].string in ("strict", "inplace"):
                continue
            replacements = [NAMES[text]]
        elif tok.type == tokenize.NUMBER and not text.lower().endswith("j"):
            value = text.replace("_", "")
            if any(c in value.lower() for c in ".e") and not value.lower().startswith("0x"):
                replacements = [repr(float(value) * 10) if float(value) else "1.0"]
            else:
                replacements = [str(int(value, 0) + 1)]
        if not replacements or lines[row - 1].lstrip().startswith(("raise ", "log", "logger.", "__all__")):
            continue
        line = lines[row - 1]
        for new in replacements:
            out.append(Mutant(rel, row, col, text, new, line.strip()))
    return out


def apply(source: str, m: Mutant) -> str:
    lines = source.splitlines(keepends=True)
    line = lines[m.line - 1]
    assert line[m.col:m.col + len(m.original)] == m.original, (m, line)
    lines[m.line - 1] = line[:m.col] + m.mutated + line[m.col + len(m.original):]
    return "".join(lines)


def run_tests(work: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """Fork a child that runs pytest on ``tests`` in ``work``: ('passed' | 'failed' | 'timeout' | 'error', seconds,
    the first failing test)."""
    log = work / "_pytest.log"
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        os.setpgid(0, 0)
        try:
            import pytest
            import torch

            torch.set_num_threads(1)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            code = pytest.main([*tests, "-x", "-q", "-rf", "-p", "no:cacheprovider", "-p", "no:xdist",
                                "-m", "not slow and not real", "-o", "addopts=", "--no-header"])
        except BaseException:  # noqa: BLE001 - anything in the child is reported through the exit code
            code = 99
        os._exit(int(code))
    deadline = start + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "timeout", time.perf_counter() - start, ""
            time.sleep(0.05)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): take the child's process group down too
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    code = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace") if log.is_file() else ""
    failed = [line.split(" ", 2)[1] for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return {0: "passed", 1: "failed", 2: "failed"}.get(code, "error"), seconds, failed[0] if failed else ""


def prepare() -> Path:
    """Scratch copy, environment and pre-imports of this (parent) process; returns the copy."""
    work = Path(tempfile.mkdtemp(prefix="nnunet_se_mutation_"))
    pkg = make_copy(ROOT, work)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pkg), str(work / "tests")]), PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    check_imports(work, env)
    os.environ.update(env)
    sys.path[:0] = [str(pkg), str(work / "tests")]
    sys.dont_write_bytecode = True
    for name in PREIMPORTS:
        __import__(name)
    os.chdir(work)
    return work


def locate(source: str, m: Mutant) -> Mutant:
    """``m`` moved to where its source line is now (the code may have changed since a previous run)."""
    lines = [line.strip() for line in source.splitlines()]
    rows = [i + 1 for i, line in enumerate(lines) if line == m.source_line]
    if not rows:
        raise LookupError(f"{m.path}: line no longer present: {m.source_line}")
    return replace(m, line=min(rows, key=lambda r: abs(r - m.line)))


def execute(mutants: list[Mutant], named: bool, keep: bool, minutes: float = 0.0,
            progress: Callable[[dict[str, float]], None] | None = None) -> dict[str, float]:
    """Run the unmutated tests of each module (they must pass), then every mutant until ``minutes`` (0: no limit)
    have passed; sets status, seconds, killed_by in place, calls ``progress(baseline)`` after each mutant; returns
    the unmutated test time per module."""
    stop = time.time() + 60 * minutes if minutes else float("inf")
    work = prepare()
    baseline: dict[str, float] = {}
    try:
        for rel in sorted({m.path for m in mutants}):
            tests = [t for t in TESTS[rel] if (work / t).is_file()]
            status, seconds, failed = run_tests(work, tests, 1800)
            if status != "passed":  # e.g. a test being edited in the checkout: this module's mutants are skipped
                print(f"mutation: unmutated tests of {rel} do not pass ({status} {failed}); skipped", flush=True)
                continue
            baseline[rel] = seconds
            print(f"baseline {rel}: {seconds:.1f} s ({len(tests)} test files)", flush=True)
        for i, m in enumerate(mutants, 1):
            if m.path not in baseline:
                m.status = "skipped"
                continue
            if time.time() > stop:
                break
            target = work / m.path
            original = target.read_text()
            mutated = original.replace(m.original, m.mutated, 1) if named else apply(original, m)
            if mutated == original:
                raise SystemExit(f"mutation: {m.original!r} not found in {m.path}")
            target.write_text(mutated)
            try:
                tests = [t for t in TESTS[m.path] if (work / t).is_file()]
                status, m.seconds, m.killed_by = run_tests(work, tests, 5 * baseline[m.path] + 30)
            finally:
                target.write_text(original)
            m.status = {"passed": "survived", "failed": "killed"}.get(status, status)
            print(f"[{i}/{len(mutants)}] {m.status:8s} {m.seconds:6.1f} s  {m.path}:{m.line} {m.original} -> "
                  f"{m.mutated}  {m.killed_by}", flush=True)
            if progress is not None:
                progress(baseline)
    finally:
        os.chdir(ROOT)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=list(TESTS), help="repository-relative paths (default: all)")
    parser.add_argument("--sample", type=int, default=0, help="run a seeded random sample of this many mutants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--named", action="store_true", help="run the six named mutants only (no result files)")
    parser.add_argument("--survivors", action="store_true",
                        help="rerun the survivors of benchmarks/results/mutation.json and update it")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    parser.add_argument("--name", default="mutation", help="result files benchmarks/results/NAME.{json,md}")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="start no mutant after this many minutes (the rest is reported as not run)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: restore the file, remove the copy
    unknown = [m for m in args.modules if m not in TESTS]
    if unknown:
        parser.error(f"--modules: not in the core set: {', '.join(unknown)} (choose from {', '.join(TESTS)})")
    started = time.time()

    if args.survivors:
        previous = json.loads((RESULTS / f"{args.name}.json").read_text())
        mutants = [Mutant(**d) for d in previous["mutants"]]
        rerun = []
        for i, m in enumerate(mutants):
            if m.status == "survived":
                try:
                    mutants[i] = locate((ROOT / m.path).read_text(), m)
                    rerun.append(mutants[i])
                except LookupError:  # the line was rewritten since: no longer this mutant
                    m.status = "stale"
        baseline = execute(rerun, False, args.keep)
        baseline = {**{k: v["baseline_s"] for k, v in previous["per_module"].items()}, **baseline}
        previous["command"] += " && python benchmarks/mutation.py --survivors" + (
            f" --name {args.name}" if args.name != "mutation" else "")
        first = previous.get("first_pass") or {"killed": previous["killed"], "run": previous["mutants_run"]}
        write_results(mutants, previous["mutants_generated"], previous["sample_seed"], baseline,
                      previous["wall_s"] + time.time() - started, previous["command"], first_pass=first,
                      name=args.name)
        return
    if args.named:
        mutants = [Mutant(p, 0, 0, old, new, old) for p, old, new in NAMED]
    else:
        mutants = [m for rel in args.modules for m in mutants_of(rel, (ROOT / rel).read_text())]
    total = len(mutants)
    if args.list:
        for m in mutants:
            print(f"{m.path}:{m.line}:{m.col + 1}: {m.original} -> {m.mutated}    {m.source_line}")
        print(f"{total} mutants")
        return
    if args.sample and args.sample < total:
        mutants = random.Random(args.seed).sample(mutants, args.sample)  # random order: a cut-off run is a sample too
    command = "python benchmarks/mutation.py " + " ".join(sys.argv[1:])
    seed = args.seed if args.sample else None

    def progress(baseline: dict[str, float]) -> None:
        write_results(mutants, total, seed, baseline, time.time() - started, command, quiet=True, name=args.name)

    baseline = execute(mutants, args.named, args.keep, args.minutes, None if args.named else progress)
    if args.named:
        survivors = [m for m in mutants if m.status == "survived"]
        print(f"named mutants: {len(mutants) - len(survivors)} / {len(mutants)} killed")
        raise SystemExit(1 if survivors else 0)
    write_results(mutants, total, seed, baseline, time.time() - started, command, name=args.name)


def write_results(mutants: list[Mutant], total: int, seed: int | None, baseline: dict[str, float], seconds: float,
                  command: str, quiet: bool = False, first_pass: dict | None = None, name: str = "mutation") -> None:
    """``benchmarks/results/<name>.{json,md}``; ``first_pass``: killed/run before the survivors' tests were added."""
    for m in mutants:
        if m.status == "survived" and (m.source_line, m.original, m.mutated) in EQUIVALENT:
            m.status = "equivalent"
    killed = sum(m.status in ("killed", "timeout") for m in mutants)
    errors = sum(m.status in ("error", "stale", "skipped", "equivalent") for m in mutants)
    not_run = sum(m.status == "pending" for m in mutants)
    scored = len(mutants) - errors - not_run
    per_module = {}
    for rel in sorted({m.path for m in mutants}):
        ms = [m for m in mutants if m.path == rel]
        k = sum(m.status in ("killed", "timeout") for m in ms)
        per_module[rel] = {"run": sum(m.status not in ("pending", "skipped") for m in ms), "killed": k,
                           "survived": sum(m.status == "survived" for m in ms),
                           "baseline_s": round(baseline[rel], 1) if rel in baseline else None}
    result = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "mutants_generated": total, "mutants_run": len(mutants), "sample_seed": seed,
        "killed": killed, "errors": errors, "not_run": not_run, "score": round(killed / scored, 4) if scored else None,
        "wall_s": round(seconds, 1), "first_pass": first_pass, "per_module": per_module,
        "survivors": [asdict(m) for m in mutants if m.status == "survived"],
        "mutants": [asdict(m) for m in mutants],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = "\n".join(f"| `{rel}` | {v['run']} | {v['killed']} | {v['survived']} | {v['baseline_s']} |"
                     for rel, v in per_module.items())
    survivors = "\n".join(f"- `{m['path']}:{m['line']}` `{m['original']}` -> `{m['mutated']}`: `{m['source_line']}`"
                          for m in result["survivors"]) or "none"
    equivalent = "\n".join(f"- `{m.path}:{m.line}` `{m.original}` -> `{m.mutated}`: "
                           f"{EQUIVALENT[(m.source_line, m.original, m.mutated)]}"
                           for m in mutants if m.status == "equivalent") or "none"
    first = (f"First pass, before tests for its survivors were added: {first_pass['killed']} / {first_pass['run']} "
             "killed.\n" if first_pass else "")
    (RESULTS / f"{name}.md").write_text(f"""# Mutation testing of the core modules

`{result['command']}` on {result['date_utc']} UTC ({result['machine']}): {len(mutants)} of {total} mutants
sampled (seed {result['sample_seed']}), {len(mutants) - not_run} run before the time limit, {result['wall_s']} s wall.

**Score: {killed} / {scored} killed ({100 * (result['score'] or 0):.1f} %)**; {errors} not scored (equivalent, line
rewritten since the first pass, tests failing unmutated, or an error); a timeout counts as killed.

{first}
| module | run | killed | survived | unmutated tests (s) |
|---|---|---|---|---|
{rows}

## Surviving mutants

{survivors}

## Equivalent mutants (not scored)

{equivalent}
""")
    if not quiet:
        print(f"score {killed}/{scored} = {result['score']}; results in {RESULTS}/{name}.{{json,md}}")


if __name__ == "__main__":
    main()
