"""betavae's disentanglement metrics against disentanglement_lib's and disent's own code, on the
same trained model and the same images. A development check: nothing in betavae imports it.

The three implementations need three interpreters, so the model is taken to them as a table:
the encoder mean μ of every sprite of the factor grid (3·6·40·32·32 = 737,280 images, rendered
exactly as the metrics would render them). Each implementation then draws factors with its own
random numbers and looks their codes up, so the only differences left are the implementations'
and their sampling. Each runs every metric with disentanglement_lib's gin defaults for several
seeds; `compare` reports the means and says where two differ by more than their sampling noise.
disent's FactorVAE score keeps the collapsed dimensions that disentanglement_lib prunes, so it is
compared with betavae's score computed the same way (`factor_vae_score_no_pruning`).

    # betavae's environment: the table of a trained sprites run, then betavae's metrics on it
    python benchmarks/metrics_crosscheck.py codes --run outputs/<date>/<time> --codes /tmp/mu.npz
    python benchmarks/metrics_crosscheck.py betavae --codes /tmp/mu.npz
    # Python 3.11 with disentanglement-lib==1.5 --no-deps, tensorflow-cpu==2.15.1 (gin.tf needs
    # tf.estimator, gone in 2.16), gin-config==0.4.0 (0.5 dropped the `blacklist` argument it
    # uses), scikit-learn, scipy, absl-py, six
    <venv>/bin/python benchmarks/metrics_crosscheck.py disentanglement_lib --codes /tmp/mu.npz
    # Python >= 3.12 with disent==0.9.3 (no BetaVAE score, modularity or explicitness there)
    <venv>/bin/python benchmarks/metrics_crosscheck.py disent --codes /tmp/mu.npz
    python benchmarks/metrics_crosscheck.py compare

Results go to benchmarks/results/metrics_crosscheck/<implementation>.json.
"""

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_crosscheck"
IMPLEMENTATIONS = ("betavae", "disentanglement_lib", "disent")
# Two means differ by more than sampling noise when their gap exceeds this many standard
# errors of the difference (from the spread over seeds of each).
NOISE_SIGMAS = 3.0

# disentanglement_lib's gin defaults, as betavae takes them.
BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_TEST = 5_000
PRUNE_THRESHOLD = 0.05
BINS = 20
UNPRUNED = "factor_vae_score_no_pruning"


def write_codes(run: str, path: Path) -> None:
    """μ of every sprite of the grid, in the C order of the factor indices, from `run`'s model."""
    import torch

    from betavae.data.sprites import SpritesGroundTruth
    from betavae.evaluation.ground_truth import encoder_mean, represent
    from betavae.loading import load_run

    loaded = load_run(run)
    if "Sprites" not in loaded.config.data._target_:
        raise SystemExit(f"{run}: trained on {loaded.config.data._target_}, not on the sprites")
    data = SpritesGroundTruth(loaded.config.data.image_size)
    grid = np.indices(data.factor_sizes).reshape(len(data.factor_sizes), -1).T
    started = time.perf_counter()
    codes = represent(data, encoder_mean(loaded.vae), torch.from_numpy(grid))
    np.savez(path, codes=codes.numpy(), factor_sizes=data.factor_sizes, run=str(loaded.checkpoint))
    print(f"{path}: μ {tuple(codes.shape)} in {time.perf_counter() - started:.0f} s")


def load_codes(path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    table = np.load(path)
    return table["codes"], tuple(int(size) for size in table["factor_sizes"])


def look_up(codes: np.ndarray, sizes: tuple[int, ...], factors: np.ndarray) -> np.ndarray:
    return codes[np.ravel_multi_index(tuple(np.asarray(factors).T), sizes)]


def run_betavae(codes: np.ndarray, sizes: tuple[int, ...], seed: int) -> dict[str, float]:
    import torch

    from betavae.evaluation.disentanglement_scores import DISENTANGLEMENT_SCORES
    from betavae.evaluation.disentanglement_scores import disentanglement_scores as scores
    from betavae.evaluation.intervention_scores import factor_vae_score

    class Table:
        factor_sizes = sizes
        factor_names = tuple(f"factor_{k}" for k in range(len(sizes)))

        def observations(self, factor_indices: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(look_up(codes, sizes, factor_indices.numpy()))

    dci = [name for name in DISENTANGLEMENT_SCORES if name.startswith("dci_")]
    groups = [[name] for name in DISENTANGLEMENT_SCORES if name not in dci] + [dci]
    computations = {", ".join(g): lambda g=g: scores(Table(), lambda x: x, g, seed) for g in groups}
    # disent keeps the dimensions that disentanglement_lib prunes (its threshold is 0): the
    # same score without pruning, to compare with disent's.
    computations[UNPRUNED] = lambda: {
        UNPRUNED: factor_vae_score(
            Table(), lambda x: x, torch.Generator().manual_seed(seed), prune_threshold=0.0
        )
    }
    return _timed(computations)


def run_disentanglement_lib(codes: np.ndarray, sizes: tuple[int, ...], seed: int) -> dict:
    import gin.tf
    from disentanglement_lib.data.ground_truth.ground_truth_data import GroundTruthData
    from disentanglement_lib.evaluation.metrics import (
        beta_vae,
        dci,
        factor_vae,
        mig,
        modularity_explicitness,
        sap_score,
        utils,
    )

    class Table(GroundTruthData):
        num_factors = len(sizes)
        factors_num_values = sizes
        observation_shape = (codes.shape[1],)

        def sample_factors(self, num, random_state):
            return np.stack([random_state.randint(size, size=num) for size in sizes], axis=1)

        def sample_observations_from_factors(self, factors, random_state):
            return look_up(codes, sizes, factors)

    gin.bind_parameter("discretizer.discretizer_fn", utils._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", BINS)
    gin.bind_parameter("prune_dims.threshold", PRUNE_THRESHOLD)

    def call(compute: Callable, **settings) -> dict:
        return compute(Table(), lambda x: x, np.random.RandomState(seed), **settings)

    train_test = {"num_train": NUM_TRAIN, "num_test": NUM_TEST}
    intervening = {"batch_size": BATCH_SIZE, "num_train": NUM_TRAIN, "num_eval": NUM_TEST}
    found = {
        "beta_vae_score": lambda: call(beta_vae.compute_beta_vae_sklearn, **intervening),
        "factor_vae_score": lambda: call(
            factor_vae.compute_factor_vae, num_variance_estimate=NUM_TRAIN, **intervening
        ),
        "mig": lambda: call(mig.compute_mig, num_train=NUM_TRAIN),
        "sap": lambda: call(sap_score.compute_sap, continuous_factors=False, **train_test),
        "dci": lambda: call(dci.compute_dci, **train_test),
        "modularity, explicitness_test": lambda: call(
            modularity_explicitness.compute_modularity_explicitness, **train_test
        ),
    }
    names = {
        "eval_accuracy": None,  # of the BetaVAE or the FactorVAE score: named by the group
        "discrete_mig": "mig",
        "SAP_score": "sap",
        "disentanglement": "dci_disentanglement",
        "completeness": "dci_completeness",
        "informativeness_test": "dci_informativeness_test",
        "modularity_score": "modularity",
        "explicitness_score_test": "explicitness_test",
    }
    return _renamed(_timed(found, raw=True), names)


def run_disent(codes: np.ndarray, sizes: tuple[int, ...], seed: int) -> dict:
    from disent.dataset import DisentDataset
    from disent.dataset.data import ArrayGroundTruthData
    from disent.metrics import metric_dci, metric_factor_vae, metric_mig, metric_sap

    # Observations shaped as the (H, W, C) images disent expects: (1, 1, D) codes.
    table = ArrayGroundTruthData(
        codes[:, None, None, :],
        factor_names=tuple(f"factor_{k}" for k in range(len(sizes))),
        factor_sizes=sizes,
    )
    dataset = DisentDataset(table)

    def call(metric: Callable) -> dict:
        np.random.seed(seed)  # disent draws from numpy's global generator
        return metric(dataset, lambda x: np.asarray(x).reshape(len(x), -1))

    found = {
        "factor_vae_score": lambda: call(metric_factor_vae),
        "mig": lambda: call(metric_mig),
        "sap": lambda: call(metric_sap),
        "dci": lambda: call(metric_dci),
    }
    names = {
        "factor_vae.eval_accuracy": UNPRUNED,
        "mig.discrete_score": "mig",
        "sap.score": "sap",
        "dci.disentanglement": "dci_disentanglement",
        "dci.completeness": "dci_completeness",
        "dci.informativeness_test": "dci_informativeness_test",
    }
    return _renamed(_timed(found, raw=True), names)


def _timed(computations: dict[str, Callable[[], dict]], raw: bool = False) -> dict:
    """{"scores": each computation's numbers, "seconds": each one's time}; `raw` keeps each
    implementation's own names, prefixed by the group for names the group alone makes clear."""
    scores, seconds = {}, {}
    for group, compute in computations.items():
        started = time.perf_counter()
        found = compute()
        seconds[group] = time.perf_counter() - started
        scores.update({f"{group}/{key}" if raw else key: float(v) for key, v in found.items()})
    return {"scores": scores, "seconds": seconds}


def _renamed(result: dict, names: dict[str, str | None]) -> dict:
    """An implementation's numbers under betavae's names, the others left out."""
    scores = {}
    for key, value in result["scores"].items():
        group, name = key.split("/", 1)
        if name in names:
            scores[names[name] or group] = value
    return {"scores": scores, "seconds": result["seconds"]}


RUNNERS = {
    "betavae": run_betavae,
    "disentanglement_lib": run_disentanglement_lib,
    "disent": run_disent,
}


def run(implementation: str, codes_path: Path, seeds: int) -> None:
    codes, sizes = load_codes(codes_path)
    runs = []
    for seed in range(seeds):
        result = RUNNERS[implementation](codes, sizes, seed)
        print(f"{implementation} seed {seed}: " + json.dumps(result["scores"]), flush=True)
        runs.append(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{implementation}.json"
    summary = {
        "implementation": implementation,
        "codes": str(codes_path),
        "seeds": seeds,
        "scores": {name: [r["scores"][name] for r in runs] for name in runs[0]["scores"]},
        "seconds": {group: [r["seconds"][group] for r in runs] for group in runs[0]["seconds"]},
    }
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"Wrote {path}")


def compare() -> None:
    """A Markdown table: each implementation's mean ± standard deviation over seeds, and whether
    the others' means lie within sampling noise of betavae's."""
    found = {
        name: json.loads((RESULTS / f"{name}.json").read_text())
        for name in IMPLEMENTATIONS
        if (RESULTS / f"{name}.json").exists()
    }
    others = [name for name in found if name != "betavae"]
    print(
        "| metric | "
        + " | ".join(found)
        + " | "
        + " | ".join(f"Δ {o} / noise" for o in others)
        + " |"
    )
    print("|---" * (1 + len(found) + len(others)) + "|")
    for metric, ours in found["betavae"]["scores"].items():
        cells = [_mean_sd(found[name]["scores"].get(metric)) for name in found]
        gaps = [_gap(ours, found[name]["scores"].get(metric)) for name in others]
        print(f"| {metric} | " + " | ".join(cells) + " | " + " | ".join(gaps) + " |")


def _mean_sd(values: list[float] | None) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _gap(ours: list[float], theirs: list[float] | None) -> str:
    """Their mean less ours, over the standard error of that difference; flagged beyond noise."""
    if not theirs:
        return "n/a"
    gap = statistics.mean(theirs) - statistics.mean(ours)
    error = math.sqrt(
        statistics.variance(ours) / len(ours) + statistics.variance(theirs) / len(theirs)
    )
    ratio = abs(gap) / error if error > 0 else (0.0 if gap == 0 else math.inf)
    return f"{gap:+.3f} / {error:.3f}" + (" **beyond noise**" if ratio > NOISE_SIGMAS else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("codes", *IMPLEMENTATIONS, "compare"))
    parser.add_argument("--run", help="codes: the trained sprites run (directory or checkpoint)")
    parser.add_argument("--codes", type=Path, help="the table of μ that `codes` writes (.npz)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N − 1 (default 3)")
    args = parser.parse_args()
    if args.step == "codes":
        write_codes(args.run, args.codes)
    elif args.step == "compare":
        compare()
    else:
        run(args.step, args.codes, args.seeds)


if __name__ == "__main__":
    main()
