"""`betavae-report` on sweeps whose jobs measured disentanglement: the metric columns, each
setting's distribution over seeds, and the plot of MIG against each objective's weight, on
sweep directories written here as betavae-train leaves them."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from betavae.apps.report import report
from betavae.lifecycle.records import read_sweep
from betavae.sweeps.mig_beta import mig_panels

# (job directory, objective, β, test MIG); capacity runs carry a β they do not use.
JOBS = [
    ("0_model.beta=1", "beta", 1.0, 0.031),
    ("1_model.beta=4", "beta", 4.0, 0.212),
    ("2_model.objective=beta_tc", "beta_tc", 6.0, 0.305),
    ("3_model.objective=capacity", "capacity", 1.0, 0.254),
]


def _write_job(
    sweep: Path, name: str, model: dict, seed: int = 0, metrics: dict | None = None
) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    config = {"model": {"latent_dim": 10, "beta": 4.0, "capacity_max": 12.0, **model}, "seed": seed}
    for path in (job / ".hydra/config.yaml", job / "config.yaml"):
        path.write_text(yaml.safe_dump(config))
    if metrics is not None:
        losses = {
            f"{stage}/{m}": 50.0 for stage in ("val", "test") for m in ("elbo", "recon", "kl")
        }
        (job / "metrics.json").write_text(json.dumps(losses | metrics))


def _mig(mig: float | None) -> dict:
    return {} if mig is None else {"test/mig": mig, "test/mig_gap/pos_x": 2 * mig}


def test_report_shows_each_jobs_test_mig_and_plots_it_against_beta(tmp_path):
    for name, objective, beta, mig in JOBS:
        _write_job(tmp_path, name, {"objective": objective, "beta": beta}, metrics=_mig(mig))

    printed = report(tmp_path)

    with (tmp_path / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [float(row["test_mig"]) for row in rows] == [mig for *_, mig in JOBS]
    assert [row["model.objective"] for row in rows] == [objective for _, objective, *_ in JOBS]
    (row_of_job_1,) = (line for line in printed.splitlines() if line.startswith("| 1_"))
    assert "| 0.212 " in row_of_job_1
    assert "mig_beta.png" in printed
    markdown = (tmp_path / "summary.md").read_text()
    assert "![MIG against each objective's weight](mig_beta.png)" in markdown
    assert (tmp_path / "mig_beta.png").read_bytes().startswith(b"\x89PNG")
    # One seed each: no distributions to report.
    assert "Over seeds" not in printed and not (tmp_path / "summary_over_seeds.csv").exists()


def test_a_sweep_on_data_without_factors_has_no_mig_column_or_plot(tmp_path):
    _write_job(tmp_path, "0_model.beta=1", {"objective": "beta", "beta": 1.0}, metrics={})

    printed = report(tmp_path)

    assert "test_mig" not in (tmp_path / "summary.csv").read_text()
    assert "mig_beta.png" not in printed
    assert not (tmp_path / "mig_beta.png").exists()


# A study: each (objective, weight) over three seeds, (test MIG, test SAP) per seed.
STUDY = {
    ("beta", "beta", 1.0): [(0.10, 0.02), (0.20, 0.04), (0.30, 0.06)],
    ("beta", "beta", 4.0): [(0.25, 0.05), (0.35, 0.07), None],  # seed 2 still running
    ("factor_vae", "factor_vae_gamma", 10.0): [(0.40, 0.10), (0.30, 0.08), (0.20, 0.06)],
    ("dip_vae_i", "dip_lambda_od", 5.0): [(0.05, 0.01), (0.15, 0.03), (0.10, 0.02)],
}


@pytest.fixture
def study(tmp_path: Path) -> Path:
    number = 0
    for (objective, key, weight), seeds in STUDY.items():
        for seed, measured in enumerate(seeds):
            name = f"{number}_objective={objective}-{weight:g},seed={seed}"
            mig, sap = measured or (None, None)
            metrics = None if measured is None else {**_mig(mig), "test/sap": sap}
            _write_job(tmp_path, name, {"objective": objective, key: weight}, seed, metrics)
            number += 1
    return tmp_path


def test_jobs_that_differ_only_by_seed_are_reported_as_distributions(study):
    printed = report(study)

    with (study / "summary_over_seeds.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(row["model.objective"], row["weight"]) for row in rows] == [
        ("beta", "β=1"),
        ("beta", "β=4"),
        ("factor_vae", "γ=10"),
        ("dip_vae_i", "λ_od=5"),
    ]
    assert [(row["seeds"], row["finished"]) for row in rows] == [("3", "3"), ("3", "2")] + [
        ("3", "3")
    ] * 2
    factor_vae = rows[2]
    assert float(factor_vae["test_mig_mean"]) == pytest.approx(0.30)
    assert float(factor_vae["test_mig_sd"]) == pytest.approx(0.10)
    assert (float(factor_vae["test_mig_min"]), float(factor_vae["test_mig_max"])) == (0.2, 0.4)
    assert float(factor_vae["test_sap_mean"]) == pytest.approx(0.08)
    assert float(rows[1]["test_mig_mean"]) == pytest.approx(0.30)  # the two seeds that finished
    # Printed and in summary.md: each metric in one cell, the seeds finished of those run.
    (printed_row,) = (line for line in printed.splitlines() if "| γ=10 " in line)
    assert "| factor_vae      | γ=10   | 3 of 3 | 50.00 ± 0.00 (50.00–50.00) |" in printed_row
    assert printed_row.endswith("| 0.300 ± 0.100 (0.200–0.400) | 0.080 ± 0.020 (0.060–0.100) |")
    assert "| β=4 " in printed and "| 2 of 3 |" in printed
    assert "Over seeds" in (study / "summary.md").read_text()
    # Every job keeps its own row too, with every metric it measured.
    with (study / "summary.csv").open() as file:
        jobs = list(csv.DictReader(file))
    assert len(jobs) == 12
    assert [float(job["test_sap"]) for job in jobs[6:9]] == [0.10, 0.08, 0.06]


def test_the_mig_plot_draws_every_objective_against_its_own_weight_with_each_seed(study):
    panels = mig_panels(read_sweep(study))

    assert {weight: list(objectives) for weight, objectives in panels.items()} == {
        "β": ["beta"],
        "γ": ["factor_vae"],
        "λ_od": ["dip_vae_i"],
    }
    migs = {
        weight: [job.metrics["test/mig"] for job in jobs]
        for weight, jobs in panels["γ"]["factor_vae"].items()
    }
    assert migs == {10.0: [0.40, 0.30, 0.20]}
    assert [len(jobs) for jobs in panels["β"]["beta"].values()] == [3, 2]
    report(study)
    assert (study / "mig_beta.png").read_bytes().startswith(b"\x89PNG")
