#!/usr/bin/env python3
"""Exact KNN-Shapley (Jia et al., PVLDB 2019): `guild value knn-shapley` vs pyDVL 0.10.

Generates a seeded, labelled random data set (Gaussian blobs per class plus
label noise), writes it as JSONL in the CLI's input shape

    {"id": "t000042", "label": 3, "vector": [0.12, -1.5, ...]}

runs pyDVL's KNNShapleyValuation on the same numbers, runs

    guild value knn-shapley --train TRAIN.jsonl --test TEST.jsonl --k K --metric M

and compares the per-training-point values (max abs difference against
--tolerance), the wall times and the peak RSS of each side.

    --reference-only   compares a pure-numpy implementation of Jia's recursion
                       against pyDVL instead (no guild binary needed); this is
                       how the pyDVL half and the comparison are validated
    --also-reference   with guild: also runs the numpy reference, reporting
                       guild-vs-reference and pyDVL-vs-reference too
    --skip-pydvl       with guild: compares guild against the numpy reference
                       only (much faster than pyDVL at full size)
    --reuse-pydvl      reuse pyDVL's values and timings from an earlier run on
                       the same data/K/metric (pyDVL takes ~7 min at full size
                       on a 2-core box)

Set up the pinned interpreter first:  PY=$(bash bench/setup-venv.sh | tail -1)
then e.g.  $PY bench/knn_shapley_vs_pydvl.py --n-train 2000 --n-test 100 --dim 32

Timing notes: pyDVL's time is the in-process time of Dataset construction +
KNNShapleyValuation.fit() on numpy arrays already in memory (perf_counter);
guild's time is the whole CLI process wall time, JSONL parsing and output
included. Each side runs in its own child process, so each peak RSS
(ru_maxrss) covers only that side (for pyDVL: interpreter + numpy/sklearn/pydvl
imports + the arrays + the fit).

The last stdout line is a JSON summary. Exit status: 0 = values agree within
--tolerance, 1 = they do not, 2 = usage error / missing binary / a side failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

try:
    import numpy as np
except ImportError:  # pragma: no cover - environment problem
    sys.stderr.write(
        "knn_shapley_vs_pydvl: numpy is not importable by %s.\n"
        "Create the pinned venv with `bash bench/setup-venv.sh` and run this "
        "script with the python it prints.\n" % sys.executable
    )
    sys.exit(2)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


class BenchError(Exception):
    """A failure that should end the run with EXIT_ERROR and a clear message."""


def target_dir() -> Path:
    t = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    return t if t.is_absolute() else REPO / t


def log(msg: str) -> None:
    print(msg, flush=True)


def mib(kib: int | float | None) -> float | None:
    """ru_maxrss / VmHWM are in KiB on Linux."""
    return None if kib is None else round(kib / 1024.0, 1)


# Peak-RSS caveat: on Linux a child's ru_maxrss (from getrusage(RUSAGE_SELF) in
# the child, or from wait4 in the parent) starts at the *parent's* peak RSS,
# because execve carries the old mm's high-water mark into the process's
# maxrss. So this script (a) measures its Python workers with VmHWM from
# /proc/self/status, the high-water mark of the worker's own post-exec address
# space, (b) runs guild under GNU /usr/bin/time (%M), whose tiny own footprint
# is all its child can inherit, and (c) otherwise falls back to wait4's
# ru_maxrss after resetting this process's high-water mark (clear_refs),
# reporting that method in the summary.


def own_peak_rss_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_own_peak_rss() -> None:
    try:  # Linux >= 4.0: "5" resets the peak RSS to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def gnu_time() -> str | None:
    path = "/usr/bin/time"
    if not os.access(path, os.X_OK):
        return None
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in (r.stdout + r.stderr) else None


# --------------------------------------------------------------------------
# Data generation
# --------------------------------------------------------------------------


def data_key(a: argparse.Namespace) -> str:
    return (
        f"n{a.n_train}-q{a.n_test}-d{a.dim}-c{a.classes}-s{a.seed}"
        f"-sep{a.separation:g}-ln{a.label_noise:g}-r{a.decimals}-{a.label_kind}"
    )


def generate(a: argparse.Namespace):
    """Gaussian blobs: class centres ~ N(0, sep^2/sqrt(dim)) per coordinate,
    points = centre + N(0, 1) noise. With that scaling the gap between
    same-class and other-class squared distances is comparable to their
    spread at any dim, so KNN is neither trivial nor hopeless. Training labels
    get `label_noise` uniform relabelling (so some values go negative); test
    labels are clean. Vectors are rounded to `decimals` places so the JSONL
    is compact and parses back to exactly the float64 values used here.
    """
    rng = np.random.default_rng(a.seed)
    centres = rng.standard_normal((a.classes, a.dim)) * (a.separation / a.dim**0.25)

    def draw(n: int, noise: float):
        y = rng.integers(0, a.classes, n)
        x = centres[y] + rng.standard_normal((n, a.dim))
        if noise > 0:
            flip = rng.random(n) < noise
            y = np.where(flip, rng.integers(0, a.classes, n), y)
        return np.round(x, a.decimals), y.astype(np.int64)

    x_train, y_train = draw(a.n_train, a.label_noise)
    x_test, y_test = draw(a.n_test, 0.0)
    return x_train, y_train, x_test, y_test


def ids(prefix: str, n: int) -> list[str]:
    w = max(6, len(str(n)))
    return [f"{prefix}{i:0{w}d}" for i in range(n)]


def write_jsonl(path: Path, names, x, y, label_kind: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as f:
        for name, i, lab in zip(names, range(len(x)), y.tolist()):
            row = x[i].tolist()  # row by row: a whole-array tolist() costs ~1 GiB at full size
            label = json.dumps(f"c{lab}") if label_kind == "str" else str(lab)
            # float.__repr__ is the shortest string that round-trips exactly
            vec = ",".join(map(repr, row))
            f.write(f'{{"id":"{name}","label":{label},"vector":[{vec}]}}\n')
    tmp.replace(path)


def prepare_data(a: argparse.Namespace) -> dict:
    ddir = Path(a.out_dir) / f"data-{data_key(a)}"
    ddir.mkdir(parents=True, exist_ok=True)
    paths = {
        "dir": ddir,
        "train": ddir / "train.jsonl",
        "test": ddir / "test.jsonl",
        "npz": ddir / "data.npz",
        "meta": ddir / "meta.json",
    }
    if all(p.exists() for k, p in paths.items() if k != "dir") and not a.regenerate:
        log(f"data: reusing {ddir}")
        return paths
    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = generate(a)
    np.savez(paths["npz"], x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    write_jsonl(paths["train"], ids("t", a.n_train), x_train, y_train, a.label_kind)
    write_jsonl(paths["test"], ids("q", a.n_test), x_test, y_test, a.label_kind)
    paths["meta"].write_text(json.dumps({"key": data_key(a), **vars_for_meta(a)}) + "\n")
    log(
        f"data: wrote {ddir} in {time.perf_counter() - t0:.1f} s "
        f"(train.jsonl {paths['train'].stat().st_size / 2**20:.0f} MiB)"
    )
    return paths


def vars_for_meta(a: argparse.Namespace) -> dict:
    keys = ("n_train", "n_test", "dim", "classes", "seed", "separation",
            "label_noise", "decimals", "label_kind")
    return {k: getattr(a, k) for k in keys}


def load_npz(path: Path, label_kind: str):
    d = np.load(path)
    y_train, y_test = d["y_train"], d["y_test"]
    if label_kind == "str":  # same labels guild sees: "c<n>"
        y_train = np.char.add("c", y_train.astype(str))
        y_test = np.char.add("c", y_test.astype(str))
    return d["x_train"], y_train, d["x_test"], y_test


# --------------------------------------------------------------------------
# Pure-numpy reference of Jia et al.'s exact recursion (Theorem 1)
# --------------------------------------------------------------------------


def jia_knn_shapley(x_train, y_train, x_test, y_test, k: int, metric: str,
                    batch: int = 32, tie_rel_eps: float = 1e-12):
    """For each test point (x, y), sort training points by distance, closest
    first, ties by training index (stable sort): alpha_1..alpha_N. Then

        s(alpha_N) = 1[y_{alpha_N} = y] / N
        s(alpha_i) = s(alpha_{i+1})
                     + (1[y_{alpha_i} = y] - 1[y_{alpha_{i+1}} = y]) / K * min(K, i) / i

    (note 1/K * min(K,i)/i == 1/max(K,i)), and the value is the mean over test
    points. The recursion is evaluated as one sequential cumulative sum, in the
    same floating-point order as pyDVL's loop.

    Returns (values, near_ties, tie_effect): near_ties counts adjacent pairs
    (ranks i, i+1 with i >= K) in some test point's order whose distances
    differ by < tie_rel_eps relative to |x|^2+|t|^2 (i.e. within float error
    of the distance computation) and whose label-match differs: if another
    implementation broke such a near-tie the other way, two values would move
    by 1/(i(i+1)) / n_test. tie_effect is the largest such move.
    """
    n = len(x_train)
    n_test = len(x_test)
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    if metric == "cosine":
        def unit(m):
            norm = np.linalg.norm(m, axis=1, keepdims=True)
            return m / np.where(norm == 0, 1.0, norm)
        xt_all, xr = unit(x_test), unit(x_train)
        scale_r = np.ones(n)
    else:
        xt_all, xr = x_test, x_train
        scale_r = np.einsum("ij,ij->i", x_train, x_train)
    denom = np.maximum(k, np.arange(1, n, dtype=np.float64))  # i = 1..N-1
    values = np.zeros(n)
    near_ties = 0
    tie_effect = 0.0
    for start in range(0, n_test, batch):
        xt = xt_all[start:start + batch]
        yt = y_test[start:start + batch]
        dots = xt @ xr.T
        if metric == "cosine":
            dist = 1.0 - dots
            scale = np.ones_like(dist)
        else:  # squared L2: same order as L2
            sq_t = np.einsum("ij,ij->i", xt, xt)
            dist = scale_r[None, :] - 2.0 * dots + sq_t[:, None]
            scale = scale_r[None, :] + sq_t[:, None]
        del dots
        order = np.argsort(dist, axis=1, kind="stable")
        match = (y_train[order] == yt[:, None]).astype(np.float64)
        # near-tie diagnostic
        ds = np.take_along_axis(dist, order, axis=1)
        sc = np.take_along_axis(scale, order, axis=1)
        gaps = np.diff(ds, axis=1) <= tie_rel_eps * np.maximum(sc[:, 1:], 1e-300)
        sens = match[:, :-1] != match[:, 1:]
        sens[:, : max(k - 1, 0)] = False  # swaps among ranks 1..K change nothing
        hit = gaps & sens
        near_ties += int(np.count_nonzero(hit))
        if hit.any():
            i = np.nonzero(hit)[1].min() + 1.0  # 1-based rank of the closest such pair
            tie_effect = max(tie_effect, 1.0 / (i * (i + 1.0)) / n_test)
        del ds, sc, gaps, sens, hit, dist, scale
        # recursion as a sequential cumsum: s_N, then + d_{N-1}, ..., + d_1
        seq = np.empty_like(match)
        seq[:, 0] = match[:, -1] / n
        seq[:, 1:] = ((match[:, :-1] - match[:, 1:]) / denom)[:, ::-1]
        s_by_rank = np.cumsum(seq, axis=1)[:, ::-1]
        per_point = np.empty_like(s_by_rank)
        np.put_along_axis(per_point, order, s_by_rank, axis=1)
        values += per_point.sum(axis=0)
    values /= n_test
    return values, near_ties, tie_effect


# --------------------------------------------------------------------------
# Child-process workers (each side's peak RSS is its own)
# --------------------------------------------------------------------------


def worker_main(a: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    x_train, y_train, x_test, y_test = load_npz(Path(a.worker_npz), a.label_kind)
    rss_loaded = own_peak_rss_kib()
    info: dict = {}
    if a.worker == "pydvl":
        import joblib
        import pydvl
        import sklearn
        from pydvl.valuation import Dataset, KNNShapleyValuation
        from sklearn.neighbors import KNeighborsClassifier

        rss_loaded = own_peak_rss_kib()  # + interpreter imports
        t0 = time.perf_counter()
        train = Dataset(x_train, y_train)
        test = Dataset(x_test, y_test)
        # l2: sklearn's default metric (minkowski, p=2 -> effective "euclidean");
        # cosine: metric="cosine" (brute force, 1 - cos similarity)
        kw = {"metric": "cosine"} if a.metric == "cosine" else {}
        model = KNeighborsClassifier(n_neighbors=a.k, **kw)
        valuation = KNNShapleyValuation(model, test_data=test, progress=False)
        with joblib.parallel_config(n_jobs=a.pydvl_jobs):
            valuation.fit(train)
        result = valuation.result
        seconds = time.perf_counter() - t0
        if not np.array_equal(result.indices, np.arange(len(x_train))):
            raise BenchError("pyDVL result indices are not 0..n-1 in order")
        values = np.asarray(result.values, dtype=np.float64)
        info = {
            "versions": {"pydvl": pydvl.__version__, "numpy": np.__version__,
                         "scikit-learn": sklearn.__version__},
            "fit_method": valuation.model._fit_method,
            "effective_metric": str(valuation.model.effective_metric_),
        }
    elif a.worker == "reference":
        t0 = time.perf_counter()
        values, near_ties, tie_effect = jia_knn_shapley(
            x_train, y_train, x_test, y_test, a.k, a.metric)
        seconds = time.perf_counter() - t0
        info = {"near_ties": near_ties, "near_tie_max_effect": tie_effect}
    else:
        raise BenchError(f"unknown worker {a.worker}")
    np.save(a.worker_out, values)
    ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_kib": own_peak_rss_kib(),
        "rss_after_load_kib": rss_loaded,
        "children_peak_rss_kib": ru_children.ru_maxrss,
        **info,
    }), flush=True)
    return 0


def run_timed(cmd: list[str], stdout_path: Path, stderr_path: Path,
              timeout: float | None) -> dict:
    """Runs cmd as a child; returns wall seconds, exit status, user/sys CPU
    seconds and the child's peak RSS (GNU time's %M if available, else wait4's
    ru_maxrss -- see the peak-RSS caveat at the top)."""
    gtime = gnu_time()
    rss_file = stdout_path.with_name(stdout_path.name + ".maxrss")
    if gtime:
        rss_file.unlink(missing_ok=True)
        cmd = [gtime, "-f", "%M", "-o", str(rss_file), *cmd]
    reset_own_peak_rss()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as e:
            raise BenchError(f"cannot start {cmd[0]}: {e}") from e
        timed_out = threading.Event()

        def kill():  # the child's own process group: GNU time and what it runs
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak, method = ru.ru_maxrss, "wait4 ru_maxrss (upper bound)"
    if gtime:
        try:  # GNU time writes "Command exited with non-zero status N" first on failure
            peak, method = int(rss_file.read_text().split()[-1]), "GNU time %M"
        except (OSError, ValueError, IndexError):
            pass
    return {
        "wall_seconds": wall,
        "returncode": proc.returncode,
        "peak_rss_kib": peak,
        "rss_method": method,
        "user_seconds": ru.ru_utime,
        "sys_seconds": ru.ru_stime,
        "timed_out": timed_out.is_set(),
    }


def run_worker(kind: str, a: argparse.Namespace, paths: dict, run_dir: Path) -> dict:
    out = run_dir / f"{kind}-values.npy"
    stats_path = run_dir / f"{kind}-stdout.json"
    if kind == "pydvl" and a.reuse_pydvl and out.exists() and stats_path.exists():
        stats = json.loads(stats_path.read_text().strip().splitlines()[-1])
        if "process_wall_seconds" in stats:
            stats["values"] = np.load(out)
            stats["cached"] = True
            log(f"pydvl: reusing {out} (measured earlier: {stats['seconds']:.3f} s, "
                f"peak RSS {mib(stats['peak_rss_kib'])} MiB)")
            return stats
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", kind,
           "--_worker-npz", str(paths["npz"]), "--_worker-out", str(out),
           "--k", str(a.k), "--metric", a.metric, "--label-kind", a.label_kind,
           "--pydvl-jobs", str(a.pydvl_jobs)]
    log(f"{kind}: running ...")
    r = run_timed(cmd, run_dir / f"{kind}-stdout.json", run_dir / f"{kind}-stderr.log",
                  a.timeout)
    if r["returncode"] != 0:
        tail = (run_dir / f"{kind}-stderr.log").read_text(errors="replace")[-3000:]
        hint = ""
        if kind == "pydvl" and "ModuleNotFoundError" in tail:
            hint = ("\n(hint: run this script with the python printed by "
                    "`bash bench/setup-venv.sh`)")
        raise BenchError(f"{kind} worker failed (exit {r['returncode']}"
                         f"{', timed out' if r['timed_out'] else ''}):\n{tail}{hint}")
    stats = json.loads(stats_path.read_text().strip().splitlines()[-1])
    stats["process_wall_seconds"] = r["wall_seconds"]
    stats_path.write_text(json.dumps(stats) + "\n")  # for --reuse-pydvl
    stats["values"] = np.load(out)
    log(f"{kind}: {stats['seconds']:.3f} s (process {r['wall_seconds']:.2f} s), "
        f"peak RSS {mib(stats['peak_rss_kib'])} MiB "
        f"(after loading data {mib(stats['rss_after_load_kib'])} MiB)")
    return stats


# --------------------------------------------------------------------------
# guild
# --------------------------------------------------------------------------


def check_guild(path: str | None) -> Path:
    p = Path(path) if path else target_dir() / "release" / "guild"
    if not p.exists():
        raise BenchError(
            f"guild binary not found at {p}.\n"
            "Build it with `cargo build --release -p guild-node` or pass --guild PATH;\n"
            "or use --reference-only to check pyDVL against the numpy reference.")
    if not (p.is_file() and os.access(p, os.X_OK)):
        raise BenchError(f"{p} is not an executable file")
    return p


def run_guild(guild: Path, a: argparse.Namespace, paths: dict, run_dir: Path) -> dict:
    cmd = [str(guild), "value", "knn-shapley", "--train", str(paths["train"]),
           "--test", str(paths["test"]), "--k", str(a.k), "--metric", a.metric]
    out, err = run_dir / "guild-values.jsonl", run_dir / "guild-stderr.log"
    log("guild: " + " ".join(cmd))
    r = run_timed(cmd, out, err, a.timeout)
    if r["returncode"] != 0:
        tail = err.read_text(errors="replace")[-3000:]
        raise BenchError(f"guild exited {r['returncode']}"
                         f"{' (timed out)' if r['timed_out'] else ''}; stderr:\n{tail}")
    r["values"] = parse_guild_output(out, ids("t", a.n_train))
    log(f"guild: {r['wall_seconds']:.3f} s, peak RSS {mib(r['peak_rss_kib'])} MiB "
        f"(user {r['user_seconds']:.1f} s, sys {r['sys_seconds']:.1f} s)")
    return r


def parse_guild_output(path: Path, train_ids: list[str]) -> np.ndarray:
    values = np.empty(len(train_ids))
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchError(f"{path}:{lineno}: not JSON ({e}): {line[:200]!r}") from e
            if not isinstance(obj, dict) or "id" not in obj or "value" not in obj:
                raise BenchError(f"{path}:{lineno}: expected {{\"id\", \"value\"}}: {line[:200]!r}")
            if n >= len(train_ids):
                raise BenchError(f"{path}: more than {len(train_ids)} output lines")
            if obj["id"] != train_ids[n]:
                raise BenchError(f"{path}:{lineno}: id {obj['id']!r}, expected "
                                 f"{train_ids[n]!r} (output must follow input order)")
            v = obj["value"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise BenchError(f"{path}:{lineno}: value {v!r} is not a finite number")
            values[n] = float(v)
            n += 1
    if n != len(train_ids):
        raise BenchError(f"{path}: {n} output lines, expected {len(train_ids)}")
    return values


# --------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------


def compare(name: str, a_vals: np.ndarray, b_vals: np.ndarray, names: list[str]) -> dict:
    diff = np.abs(a_vals - b_vals)
    i = int(np.argmax(diff))
    scale = max(float(np.max(np.abs(b_vals))), 1e-300)
    d = {
        "max_abs_diff": float(diff[i]),
        "max_abs_diff_id": names[i],
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff_over_max_abs_value": float(diff[i] / scale),
        "n_over_1e-9": int(np.count_nonzero(diff > 1e-9)),
    }
    log(f"{name}: max |diff| = {d['max_abs_diff']:.3e} (at {names[i]}: "
        f"{a_vals[i]:.17g} vs {b_vals[i]:.17g}), mean |diff| = {d['mean_abs_diff']:.3e}")
    return d


def main_run(a: argparse.Namespace) -> int:
    guild = None
    if not a.reference_only:
        guild = check_guild(a.guild)  # fail before spending minutes on data/pyDVL
    if a.k < 1:
        raise BenchError("--k must be >= 1")
    if a.k > a.n_train:
        raise BenchError("--k must be <= --n-train (pyDVL/sklearn require it)")
    Path(a.out_dir).mkdir(parents=True, exist_ok=True)
    paths = prepare_data(a)
    run_dir = Path(a.out_dir) / f"run-{data_key(a)}-k{a.k}-{a.metric}"
    run_dir.mkdir(parents=True, exist_ok=True)
    train_names = ids("t", a.n_train)

    summary: dict = {
        "bench": "knn_shapley_vs_pydvl",
        "mode": "reference-only" if a.reference_only else
                ("guild-vs-reference" if a.skip_pydvl else "guild-vs-pydvl"),
        **vars_for_meta(a), "k": a.k, "metric": a.metric,
        "tolerance": a.tolerance, "data_dir": str(paths["dir"]), "run_dir": str(run_dir),
        "cpus": os.cpu_count(),
    }

    side = {}
    if not a.skip_pydvl:
        side["pydvl"] = run_worker("pydvl", a, paths, run_dir)
    if a.reference_only or a.also_reference or a.skip_pydvl:
        side["reference"] = run_worker("reference", a, paths, run_dir)
    if guild is not None:
        side["guild"] = run_guild(guild, a, paths, run_dir)

    if "pydvl" in side:
        p = side["pydvl"]
        summary.update({
            "pydvl_seconds": round(p["seconds"], 4),
            "pydvl_process_seconds": round(p["process_wall_seconds"], 4),
            "pydvl_peak_rss_mib": mib(p["peak_rss_kib"]),
            "pydvl_rss_after_load_mib": mib(p["rss_after_load_kib"]),
            "pydvl_versions": p["versions"],
            "pydvl_cached": bool(p.get("cached")),
            "pydvl_fit_method": p["fit_method"],
            "pydvl_effective_metric": p["effective_metric"],
            "pydvl_value_sum": float(p["values"].sum()),
        })
        if a.pydvl_jobs != 1:
            summary["pydvl_children_peak_rss_mib"] = mib(p["children_peak_rss_kib"])
    if "reference" in side:
        r = side["reference"]
        summary.update({
            "reference_seconds": round(r["seconds"], 4),
            "reference_peak_rss_mib": mib(r["peak_rss_kib"]),
            "reference_near_ties": r["near_ties"],
            "reference_near_tie_max_effect": r["near_tie_max_effect"],
            "reference_value_sum": float(r["values"].sum()),
        })
        if r["near_ties"]:
            log(f"note: {r['near_ties']} label-changing near-ties (relative gap < 1e-12) "
                f"at rank >= K; implementations may order them differently, moving "
                f"values by up to {r['near_tie_max_effect']:.2e}")
    if "guild" in side:
        g = side["guild"]
        summary.update({
            "guild": str(guild),
            "guild_seconds": round(g["wall_seconds"], 4),
            "guild_user_seconds": round(g["user_seconds"], 3),
            "guild_peak_rss_mib": mib(g["peak_rss_kib"]),
            "guild_rss_method": g["rss_method"],
            "guild_value_sum": float(g["values"].sum()),
        })

    # primary comparison decides the exit status
    if a.reference_only:
        primary = ("reference", "pydvl")
    elif a.skip_pydvl:
        primary = ("guild", "reference")
    else:
        primary = ("guild", "pydvl")
    cmp_main = compare(f"{primary[0]} vs {primary[1]}", side[primary[0]]["values"],
                       side[primary[1]]["values"], train_names)
    summary["compared"] = f"{primary[0]} vs {primary[1]}"
    summary.update(cmp_main)
    if a.also_reference and not a.reference_only:
        for other in ("guild", "pydvl"):
            if other in side and other != "reference":
                c = compare(f"{other} vs reference", side[other]["values"],
                            side["reference"]["values"], train_names)
                summary[f"{other}_vs_reference_max_abs_diff"] = c["max_abs_diff"]

    t_a = summary.get(f"{primary[0]}_seconds")
    t_b = summary.get(f"{primary[1]}_seconds")
    if t_a and t_b:
        summary[f"ratio_{primary[1]}_over_{primary[0]}"] = round(t_b / t_a, 3)
    ok = cmp_main["max_abs_diff"] <= a.tolerance
    summary["pass"] = bool(ok)

    log("")
    for s in ("pydvl", "reference", "guild"):
        if f"{s}_seconds" in summary:
            log(f"{s:>9}: {summary[f'{s}_seconds']:10.3f} s   peak RSS "
                f"{summary[f'{s}_peak_rss_mib']:9.1f} MiB")
    for key, val in summary.items():
        if key.startswith("ratio_"):
            log(f"    ratio: {key[6:].replace('_over_', ' / ')} = {val}")
    log(f"max |diff| {cmp_main['max_abs_diff']:.3e} "
        f"{'<=' if ok else '>'} tolerance {a.tolerance:g}: {'PASS' if ok else 'FAIL'}")
    print(json.dumps(summary, sort_keys=False), flush=True)
    return EXIT_OK if ok else EXIT_MISMATCH


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--guild", help="guild binary (default: "
                    "${CARGO_TARGET_DIR:-target}/release/guild under the repo root)")
    ap.add_argument("--n-train", type=int, default=100_000)
    ap.add_argument("--n-test", type=int, default=1_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metric", choices=("l2", "cosine"), default="l2")
    ap.add_argument("--separation", type=float, default=1.0,
                    help="class-centre scale (larger = easier problem)")
    ap.add_argument("--label-noise", type=float, default=0.1,
                    help="fraction of training labels relabelled uniformly at random")
    ap.add_argument("--decimals", type=int, default=6,
                    help="vectors are rounded to this many decimals")
    ap.add_argument("--label-kind", choices=("int", "str"), default="int",
                    help='labels as JSON integers (3) or strings ("c3")')
    ap.add_argument("--out-dir", default=None,
                    help="data + outputs (default: ${CARGO_TARGET_DIR:-target}/knn-shapley-bench)")
    ap.add_argument("--regenerate", action="store_true",
                    help="rewrite the data files even if they exist for these parameters")
    ap.add_argument("--tolerance", type=float, default=1e-6,
                    help="max abs difference allowed")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds allowed for each side's process")
    ap.add_argument("--reuse-pydvl", action="store_true",
                    help="reuse pyDVL values + timings saved by an earlier run with the "
                         "same data, K and metric (pyDVL takes minutes at full size)")
    ap.add_argument("--pydvl-jobs", type=int, default=1,
                    help="joblib n_jobs around KNNShapleyValuation.fit")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--reference-only", action="store_true",
                      help="numpy reference vs pyDVL; no guild binary needed")
    mode.add_argument("--also-reference", action="store_true",
                      help="also run the numpy reference and compare all three")
    mode.add_argument("--skip-pydvl", action="store_true",
                      help="guild vs the numpy reference only")
    # internal: child-process workers
    ap.add_argument("--_worker", dest="worker", choices=("pydvl", "reference"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--_worker-npz", dest="worker_npz", help=argparse.SUPPRESS)
    ap.add_argument("--_worker-out", dest="worker_out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.out_dir is None:
        a.out_dir = str(target_dir() / "knn-shapley-bench")
    for name in ("n_train", "n_test", "dim", "classes"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        if a.worker:
            return worker_main(a)
        return main_run(a)
    except BenchError as e:
        sys.stderr.write(f"knn_shapley_vs_pydvl: error: {e}\n")
        if not a.worker:
            print(json.dumps({"bench": "knn_shapley_vs_pydvl", "error": str(e),
                              "pass": False}), flush=True)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
