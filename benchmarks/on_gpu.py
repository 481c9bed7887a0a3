"""The GPU benchmark, `python benchmarks/throughput.py --device cuda`: betavae against the
classic and the fastest plain loops and a CUDA-graph ceiling on the same GPU, the host-device
syncs of betavae's training steps, the optional accelerations, and several jobs sharing the GPU.

Sized to run in about 8 minutes on one H100/H200 (the time a borrowed GPU allows), so every
training runs once: the ratios between contenders are large next to a single run's noise
there, which the CPU benchmark's repeats exist for.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from throughput import (
    betavae_overrides,
    betavae_train_script,
    compare,
    render_sprites_file,
    table,
    write_data,
)

MNIST_TRAIN, MNIST_TEST, EPOCHS = 60000, 10000, 3
CONV_EXAMPLES = 8000
BIG_BATCH = 1024  # beside 128: where the GPU starts to be used
# The README's sweep of nine jobs, shortened to 3 epochs, on the default data: 20,000 sprites
# of which 16,000 train.
DEFAULT_TRAINING_IMAGES = 16000
README_SWEEP = ["model.latent_dim=2,8,32", "model.beta=0.5,1,4", "trainer.max_epochs=3"]
SHARED_JOBS = 8


def drive_cuda(args: argparse.Namespace, results: dict) -> dict:
    threads = args.threads
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_data(root / "mnist", MNIST_TRAIN, MNIST_TEST)
        mnist = [f"--data={root / 'mnist'}", f"--epochs={EPOCHS}", "--device=cuda"]
        overrides = ["data=mnist", f"data.data_dir={root / 'mnist'}", "data.num_workers=0"]

        def plain(batch: int, precision: str = "32-true", *more: str) -> list[str]:
            return [*mnist, f"--batch-size={batch}", f"--precision={precision}", *more]

        def betavae(
            batch: int, precision: str = "32-true", *more: str, epochs: int = EPOCHS
        ) -> list[str]:
            chosen = betavae_overrides(overrides, epochs, "mlp", device="cuda", batch_size=batch)
            return [
                *plain(batch, precision, *more),
                "--",
                *chosen,
                f"trainer.precision={precision}",
            ]

        def part(key: str, title: str, contenders: dict) -> dict:
            print(f"\n{title}", flush=True)
            results[key] = compare(contenders, 1, threads, tolerate_failures=True)
            print(table(f"\n{title}", results[key]), flush=True)
            return results[key]

        mlp = part(
            "mlp_batch_128",
            f"MLP 784-400-20, batch 128, {MNIST_TRAIN} MNIST-format images",
            {
                "betavae": ("betavae", betavae(128)),
                "classic": ("classic", plain(128)),
                "fastest": ("fastest", plain(128)),
                "CUDA-graph ceiling": ("graph", plain(128)),
                "betavae bf16-mixed": ("betavae", betavae(128, "bf16-mixed")),
                "fastest bf16-mixed": ("fastest", plain(128, "bf16-mixed")),
                "ceiling bf16-mixed": ("graph", plain(128, "bf16-mixed")),
                "betavae 16-mixed": ("betavae", betavae(128, "16-mixed")),
                "fastest 16-mixed": ("fastest", plain(128, "16-mixed")),
            },
        )
        results["targets"] = targets(mlp)
        big = BIG_BATCH
        part(
            f"mlp_batch_{big}",
            f"MLP, batch {big}",
            {
                "betavae": ("betavae", betavae(big)),
                "fastest": ("fastest", plain(big)),
                "CUDA-graph ceiling": ("graph", plain(big)),
            },
        )
        sprites_file = render_sprites_file(root / "cache", CONV_EXAMPLES)
        sprites = [
            f"--sprites={sprites_file}",
            "--network=conv",
            "--latent-dim=10",
            f"--epochs={EPOCHS}",
            "--device=cuda",
        ]
        sprites_overrides = [
            "data=sprites",
            f"data.data_dir={root / 'cache'}",
            f"data.num_examples={CONV_EXAMPLES}",
        ]
        conv = betavae_overrides(sprites_overrides, EPOCHS, "conv", 10, device="cuda")
        part(
            "conv_batch_128",
            f"Conv VAE, batch 128, {CONV_EXAMPLES} sprites 64x64",
            {
                "betavae": ("betavae", [*sprites, "--", *conv]),
                "fastest": ("fastest", sprites),
                "CUDA-graph ceiling": ("graph", sprites),
            },
        )
        audited = {
            precision: ("betavae", betavae(128, precision, "--sync-audit", epochs=1))
            for precision in ("32-true", "16-mixed")
        }
        audits = compare(audited, 1, threads, tolerate_failures=True)
        results["sync_audit"] = {key: a.get("sync_audit", a) for key, a in audits.items()}
        print("\nHost-device syncs in betavae's training steps (MLP, batch 128, 1 epoch):")
        print(json.dumps(results["sync_audit"], indent=2), flush=True)
        print("\nOptional accelerations, MLP, batch 128", flush=True)
        options = compare(
            {
                "betavae + compile reduce-overhead": (
                    "betavae",
                    betavae(128, "32-true", "--accel=compile-reduce-overhead"),
                ),
                "fastest + compile": ("fastest", plain(128, "32-true", "--accel=compile")),
                "fastest + compile reduce-overhead": (
                    "fastest",
                    plain(128, "32-true", "--accel=compile-reduce-overhead"),
                ),
            },
            1,
            threads,
            tolerate_failures=True,
        )
        # Against the same contenders without them, from the first part.
        results["options"] = {"betavae": mlp["betavae"], "fastest": mlp["fastest"], **options}
        print(table("\nOptional accelerations, MLP, batch 128", results["options"]), flush=True)
        results["shared_gpu"] = shared_gpu(root / "cache")
    return results


def targets(mlp: dict) -> dict:
    """Issue 21's targets at batch 128: betavae / classic >= 10, betavae / ceiling >= 0.5."""
    speed = {label: r.get("images_per_s") for label, r in mlp.items()}
    ratios = {}
    for other, target in (("classic", 10.0), ("CUDA-graph ceiling", 0.5)):
        if speed["betavae"] and speed[other]:
            ratio = speed["betavae"] / speed[other]
            ratios[f"betavae / {other}"] = {"ratio": ratio, "target": target}
            print(f"betavae / {other}: {ratio:.2f} (target {target:g})", flush=True)
    return ratios


def shared_gpu(data_dir: Path) -> dict:
    """The README's nine-job sweep with the parallel launcher, one job at a time and
    `SHARED_JOBS` at once on the one GPU: wall time, aggregate images/s, and whether each job's
    result is the same both ways."""
    render_sprites_file(data_dir, 20000)  # the default data, drawn once beforehand
    environment = {**os.environ, "BETAVAE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    script = betavae_train_script()
    sweeps = {}
    with tempfile.TemporaryDirectory() as outputs:
        for n_jobs in (1, SHARED_JOBS):
            sweep_dir = Path(outputs) / f"{n_jobs}-at-once"
            command = [str(script), "-m", "hydra/launcher=parallel", *README_SWEEP]
            command += [f"hydra.launcher.n_jobs={n_jobs}", f"hydra.sweep.dir={sweep_dir}"]
            print(f"\n{' '.join(command[1:])}", flush=True)
            started = time.perf_counter()
            done = subprocess.run(command, env=environment, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                print(done.stderr[-3000:], flush=True)
                return {"failed": done.stderr[-2000:]}
            jobs = sorted(path.parent for path in sweep_dir.glob("*/metrics.json"))
            metrics = {job.name: json.loads((job / "metrics.json").read_text()) for job in jobs}
            images = sum(m["epochs"] * DEFAULT_TRAINING_IMAGES for m in metrics.values())
            sweeps[n_jobs] = {
                "wall_s": wall,
                "jobs": len(jobs),
                "aggregate_images_per_s": images / wall,
                "test_elbo": {name: m["test/elbo"] for name, m in metrics.items()},
            }
            print(f"  {len(jobs)} jobs in {wall:.1f} s: {images / wall:.0f} images/s", flush=True)
    one, shared = sweeps[1], sweeps[SHARED_JOBS]
    result = {
        "command": f"betavae-train -m hydra/launcher=parallel {' '.join(README_SWEEP)}",
        "one_at_a_time": one,
        f"{SHARED_JOBS}_at_once": shared,
        "speed_up": one["wall_s"] / shared["wall_s"],
        "same_results": one["test_elbo"] == shared["test_elbo"],
    }
    print(
        f"  {SHARED_JOBS} at once / one at a time: {result['speed_up']:.2f}x the aggregate "
        f"images/s (target 4); same test ELBO per job: {result['same_results']}",
        flush=True,
    )
    return result
