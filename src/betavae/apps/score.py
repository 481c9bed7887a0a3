"""`betavae-score`: anomaly scores per example, flagged against a threshold set on normal data."""

import csv
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from betavae.apps.model_apps import data_split, open_run, other_data
from betavae.apps.model_apps import examples as examples_of
from betavae.apps.result_files import Results
from betavae.data.base import class_labels, source_indices
from betavae.evaluation.anomaly import anomaly_scores, quantile_threshold, separation
from betavae.evaluation.collect import run_split
from betavae.user_paths import shown_path

# What a score is measured in, where it is not nats.
UNITS = {"knn": "standardized latent distance"}


def score(cfg: DictConfig, files: Results) -> Path:
    """Score a split (of the run's data with every class, or of `data=`), write CSV + summary.

    The threshold comes from the run's own validation split, the normal data the model was
    trained on (without any excluded classes), so it means the same whatever is scored.
    """
    run = open_run(cfg)
    reference = run.datamodule()
    # On the run's own data, the classes held out of training are put back to be scored.
    put_back = {} if other_data(cfg) else {"exclude_classes": []}
    data = run.data_config(OmegaConf.merge(put_back, cfg.data))
    scored = run.datamodule(data)
    files.claim(run.checkpoint, data, cfg)
    iwae_k = cfg.k if cfg.score == "iwae" else None
    # The knn score measures distances to the encodings of the normal data the model was
    # trained on; the validation examples (for the threshold) are scored against them too.
    trained_on = None
    if cfg.score == "knn":
        trained_on = run_split(run.vae, reference.split_dataloader("train"))
    normal, scores = (
        anomaly_scores(run_split(run.vae, loader, iwae_k), cfg.score, trained_on, cfg.neighbours)
        for loader in (reference.split_dataloader("val"), scored.split_dataloader(data_split(cfg)))
    )
    threshold = quantile_threshold(normal, cfg.quantile)
    flagged = scores > threshold
    split = scored.split_set(data_split(cfg))
    indices = source_indices(split)
    labels = class_labels(split)
    anomalous = cfg.anomalous_classes
    if anomalous is None:  # by default, the classes the model never saw
        anomalous = run.config.data.get("exclude_classes", [])
    is_anomaly = None
    if labels is not None and anomalous:
        is_anomaly = torch.isin(labels, torch.tensor(list(anomalous)))
    summary: dict[str, Any] = {
        "checkpoint": str(run.checkpoint.resolve()),
        "split": data_split(cfg),
        "score": cfg.score,
        "examples": len(scores),
        "quantile": cfg.quantile,
        "threshold": threshold,
        "flagged": int(flagged.sum()),
        "flagged_indices": indices[flagged].tolist(),
        "anomalous_classes": list(anomalous),
    }
    found = None if is_anomaly is None else separation(scores, is_anomaly)
    if found is not None:
        summary.update(auroc=found.auroc, auprc=found.auprc, anomalies=int(is_anomaly.sum()))
    columns = {
        "index": indices.tolist(),
        "label": [""] * len(scores) if labels is None else labels.tolist(),
        "score": scores.tolist(),
        "flagged": flagged.int().tolist(),
    }
    if is_anomaly is not None:
        columns["anomaly"] = is_anomaly.int().tolist()
    table = files.path("table")
    _write_csv(table, columns)
    summary_path = files.write_json("summary", summary)
    print(report(summary, len(normal)))
    print(f"Scores:  {shown_path(table)}\nSummary: {shown_path(summary_path)}")
    return table


def _write_csv(path: Path, columns: dict[str, list]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))


def report(summary: dict[str, Any], num_normal: int) -> str:
    flagged, examples = summary["flagged"], summary["examples"]
    lines = [
        f"Scored {examples_of(examples, summary['split'])} by {summary['score']} "
        f"({UNITS.get(summary['score'], 'nats')}; higher = more anomalous).",
        f"Threshold {summary['threshold']:.2f}, the {summary['quantile']} quantile of "
        f"{num_normal} validation scores: {flagged} flagged ({flagged / examples:.1%}).",
    ]
    if "auroc" in summary:
        lines.append(
            f"Classes {summary['anomalous_classes']} as anomalies ({summary['anomalies']} of "
            f"{examples}): AUROC {summary['auroc']:.3f}, AUPRC {summary['auprc']:.3f}"
        )
    return "\n".join(lines)
