"""The trainings that benchmarks/throughput.py compares. Each runs once, in a process of its
own (`throughput.py --worker NAME ...`), and prints one `RESULT {json}` line.

- betavae: the real `betavae-train` entry point (Hydra config, the DataModule, VAEModule,
  Trainer with the default callbacks, TensorBoard logging and checkpointing), with one timing
  callback appended.
- classic: torchvision's MNIST with ToTensor through a DataLoader, as pytorch/examples does.
- fastest: a plain loop slicing one preloaded tensor (on the training device) in a random order.
- lightning: the same slices and model in a bare LightningModule, validating every epoch:
  Lightning's own loop, with nothing of betavae around it.
- graph: the plain model's whole training step (forward, loss, backward, fused Adam) captured
  once as a CUDA graph and replayed on each batch copied into its static input: what the GPU
  can do once Python and kernel launches are out of the way. CUDA only.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import lightning.pytorch as pl

# betavae holds its default 10% of the training file out for validation; the plain loops
# train on as many images, so the test ELBOs after the same epochs compare.
TRAIN_FRACTION = 0.9
COMPILE_MODES = {"compile": "default", "compile-reduce-overhead": "reduce-overhead"}


class EpochClock:
    """Times the training batches of each epoch (validation and checkpoints excluded), and the
    whole of training from its start to its end (everything included). On a GPU the clock
    waits for the queued kernels at each reading, so that a time covers the work done in it."""

    def __init__(self, device: torch.device) -> None:
        self._sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
        self.first_step: float | None = None
        self.epoch_seconds: list[float] = []
        self.epoch_images: list[int] = []
        self.fit_start: float | None = None
        self.fit_seconds: float | None = None
        self._start: float | None = None  # of the epoch being timed
        self._images = 0

    def start_fit(self) -> None:
        self._sync()
        self.fit_start = time.perf_counter()

    def end_fit(self) -> None:
        self._sync()
        self.fit_seconds = time.perf_counter() - self.fit_start

    def start_epoch(self) -> None:
        self._sync()
        self._start, self._images = time.perf_counter(), 0

    def batch_done(self, images: int) -> None:
        if self.first_step is None:
            self.first_step = time.time()
        self._images += images

    def end_epoch(self) -> None:
        """The end of the epoch's training batches; a second call in one epoch changes nothing."""
        if self._start is None:
            return
        self._sync()
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self.epoch_images.append(self._images)
        self._start = None

    def images_per_second(self) -> float:
        """Over all epochs but the first when there are several: the first warms caches up."""
        kept = slice(1, None) if len(self.epoch_seconds) > 1 else slice(None)
        return sum(self.epoch_images[kept]) / sum(self.epoch_seconds[kept])


def report(clock: EpochClock, args: argparse.Namespace, test_elbo: float, **extra) -> None:
    result = {
        "images_per_s": clock.images_per_second(),
        # Every epoch's training images over the whole of training: validation, checkpoints,
        # logging and pictures included where a contender has them.
        "end_to_end_images_per_s": sum(clock.epoch_images) / clock.fit_seconds,
        "fit_s": clock.fit_seconds,
        "startup_s": clock.first_step - args.spawned_at,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test_elbo": test_elbo,
        "epoch_s": clock.epoch_seconds,
        **extra,
    }
    if args.device == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result), flush=True)


def skip(reason: str) -> None:
    """A contender that cannot run here says why instead of a result."""
    print("RESULT " + json.dumps({"skipped": reason}), flush=True)


def plain_model(args: argparse.Namespace, image_shape: tuple[int, int, int]) -> torch.nn.Module:
    from betavae.vae import build_vae

    hidden = [400] if args.network == "mlp" else [256]
    channels = [32, 32, 64, 64]
    model = build_vae(image_shape, args.latent_dim, args.network, hidden, channels, "bernoulli")
    return model.to(args.device)


def autocast(args: argparse.Namespace, **options) -> AbstractContextManager:
    """The autocast of `args.precision` as Lightning's mixed-precision plugins set it up."""
    dtypes = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
    if args.precision not in dtypes:
        return nullcontext()
    return torch.autocast(args.device, dtype=dtypes[args.precision], **options)


def test_elbo(model: torch.nn.Module, test_images: torch.Tensor, batch_size: int) -> float:
    from betavae.vae import elbo_terms

    with torch.no_grad():
        total = sum(
            elbo_terms(model, x).elbo.item() * len(x) for x in test_images.split(batch_size)
        )
    return total / len(test_images)


def _plain_training(
    batches: Callable[[], Iterator[torch.Tensor]],
    test_images: torch.Tensor,
    image_shape: tuple[int, int, int],
    args: argparse.Namespace,
) -> None:
    """The loop both plain contenders share; only where batches come from differs.

    `--accel` switches on one of the optional accelerations, to see whether it pays here.
    """
    from betavae.vae import elbo_terms

    torch.manual_seed(0)
    model = plain_model(args, image_shape)
    channels_last = args.accel == "channels_last"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if args.accel in COMPILE_MODES:
        model.compile(mode=COMPILE_MODES[args.accel])
    # torch's default Adam, as a plain loop would write it; `fused_adam` is the kernel betavae
    # uses, to show how much of the gap between the two is the optimizer.
    fused = True if args.accel == "fused_adam" else None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    scaler = torch.amp.GradScaler(args.device, enabled=args.precision == "16-mixed")
    clock = EpochClock(torch.device(args.device))
    clock.start_fit()
    for _ in range(args.epochs):
        clock.start_epoch()
        for x in batches():
            x = x.to(args.device, non_blocking=True)
            optimizer.zero_grad()
            with autocast(args):
                loss = elbo_terms(model, x.contiguous(memory_format=memory_format)).loss(1.0)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            clock.batch_done(len(x))
        clock.end_epoch()
    clock.end_fit()
    report(clock, args, test_elbo(model, test_images.to(args.device), args.batch_size))


def worker_classic(args: argparse.Namespace) -> None:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    to_tensor = transforms.ToTensor()
    train = datasets.MNIST(args.data, train=True, download=False, transform=to_tensor)
    test = datasets.MNIST(args.data, train=False, download=False, transform=to_tensor)
    kept = Subset(train, range(round(len(train) * TRAIN_FRACTION)))
    # pytorch/examples' MNIST settings: on a GPU one loader process and pinned memory.
    on_gpu = {"num_workers": 1, "pin_memory": True} if args.device == "cuda" else {}
    loader = DataLoader(kept, batch_size=args.batch_size, shuffle=True, **on_gpu)
    test_images = torch.stack([image for image, _ in test])
    _plain_training(lambda: (x for x, _ in loader), test_images, (1, 28, 28), args)


def worker_fastest(args: argparse.Namespace) -> None:
    images, test_images = preloaded(args)
    batches = Batches(images, args.batch_size, shuffle=True)
    _plain_training(batches.__iter__, test_images, tuple(images.shape[1:]), args)


class Batches:
    """Slices of one preloaded tensor, in a new random order each pass if `shuffle`."""

    def __init__(self, images: torch.Tensor, batch_size: int, shuffle: bool = False) -> None:
        self.images, self.batch_size, self.shuffle = images, batch_size, shuffle

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        count, device = len(self.images), self.images.device
        order = torch.randperm(count, device=device) if self.shuffle else torch.arange(count)
        for index in order.split(self.batch_size):
            yield self.images[index]


def worker_lightning(args: argparse.Namespace) -> None:
    """A bare LightningModule around the plain model, fused Adam and a validation of the
    held-out images every epoch, as betavae has; no callback but the clock, no logger, no
    checkpoints. Its distance to the fastest loop is Lightning's own loop (hooks, closure,
    progress tracking), which any trainer built on it pays; its distance to betavae is what
    betavae adds."""
    import lightning.pytorch as pl

    from betavae.vae import elbo_terms

    train, held_out, test = (images.to(args.device) for images in splits(args))
    torch.manual_seed(0)

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.vae = plain_model(args, tuple(train.shape[1:]))

        def training_step(self, images: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return elbo_terms(self.vae, images).loss(1.0)

        def validation_step(self, images: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return elbo_terms(self.vae, images).elbo.detach()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)

    clock = EpochClock(torch.device(args.device))
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timing_callback(clock)],
    )
    module = Bare()
    batches = Batches(train, args.batch_size, shuffle=True)
    trainer.fit(module, batches, Batches(held_out, args.batch_size))
    report(clock, args, test_elbo(module.vae, test, args.batch_size))


def preloaded(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """(training images, test images) as float tensors on the training device."""
    train, _, test = splits(args)
    return train.to(args.device), test.to(args.device)


def splits(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(training, held-out, test) images as float tensors, as many of each as betavae uses."""
    if args.sprites:  # betavae's 80/10/10 split
        data = torch.load(args.sprites, weights_only=True)["images"].float()
        train_end, test_end = round(len(data) * 0.8), round(len(data) * 0.9)
        return data[:train_end], data[test_end:], data[train_end:test_end]
    from torchvision import datasets

    def floats(pixels: torch.Tensor) -> torch.Tensor:
        return pixels.unsqueeze(1).float() / 255

    # Each part converted apart, so that a worker that drops the held-out part frees it.
    train = datasets.MNIST(args.data, train=True, download=False).data
    test = datasets.MNIST(args.data, train=False, download=False).data
    train_end = round(len(train) * TRAIN_FRACTION)
    return floats(train[:train_end]), floats(train[train_end:]), floats(test)


def worker_graph(args: argparse.Namespace) -> None:
    """The CUDA-graph ceiling. Every full batch of an epoch is gathered into the graph's static
    input and the graph replayed; the last, partial batch of each epoch is left out (a graph
    has one batch size), and so not counted."""
    if args.device != "cuda" or not torch.cuda.is_available():
        skip("the CUDA-graph ceiling needs a CUDA GPU (torch.cuda.graphs)")
        return
    if args.precision == "16-mixed":
        skip("no CUDA-graph ceiling for 16-mixed: the GradScaler decides on the host")
        return
    from betavae.vae import elbo_terms

    images, test_images = preloaded(args)
    torch.manual_seed(0)
    model = plain_model(args, tuple(images.shape[1:]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=True)
    static_input = images[: args.batch_size].clone()

    def step() -> None:
        # Autocast's weight cache would hold tensors of the capture, not of each replay.
        with autocast(args, cache_enabled=False):
            loss = elbo_terms(model, static_input).loss(1.0)
        loss.backward()
        optimizer.step()

    # Warm-up on a side stream before the capture, as torch.cuda.graphs asks: the optimizer's
    # state and the allocator's pools exist before they are recorded.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()

    clock = EpochClock(torch.device("cuda"))
    clock.start_fit()
    full_batches = len(images) // args.batch_size
    for _ in range(args.epochs):
        clock.start_epoch()
        order = torch.randperm(len(images), device=images.device)
        for index in order[: full_batches * args.batch_size].split(args.batch_size):
            torch.index_select(images, 0, index, out=static_input)
            graph.replay()
            clock.batch_done(args.batch_size)
        clock.end_epoch()
    clock.end_fit()
    report(clock, args, test_elbo(model, test_images, args.batch_size))


class SyncAudit:
    """Counts the host-device synchronisations of training steps by where they happen
    (`torch.cuda.set_sync_debug_mode`), apart for the logging steps, which read values back
    on purpose."""

    def __init__(self) -> None:
        self.paused = False
        """True during validation, which is not a training step."""
        self.logging_step = False
        self.sites: dict[bool, Counter] = {True: Counter(), False: Counter()}
        self.steps = Counter()

    def start_step(self, logging_step: bool) -> None:
        self.logging_step = logging_step
        self.steps[logging_step] += 1

    def record(self, message: Warning | str, *_, **__) -> None:
        if self.paused or "synchroniz" not in str(message):
            return
        frames = [
            f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
            for frame in traceback.extract_stack()[:-1]
            if "/warnings.py" not in frame.filename
        ]
        self.sites[self.logging_step][" <- ".join(reversed(frames[-6:]))] += 1

    def summary(self) -> dict:
        def named(logging_step: bool) -> dict:
            return {
                "steps": self.steps[logging_step],
                "syncs": sum(self.sites[logging_step].values()),
                "sites": dict(self.sites[logging_step].most_common(12)),
            }

        return {"logging_steps": named(True), "other_steps": named(False)}


def timing_callback(clock: EpochClock, audit: "SyncAudit | None" = None) -> "pl.Callback":
    """A Lightning callback that times a fit on `clock`, and audits its syncs with `audit`.
    (Lightning is imported here: the plain loops' start-up would otherwise include it.)"""
    import lightning.pytorch as pl

    class Timing(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            clock.start_fit()
            if audit is not None:
                warnings.simplefilter("always")
                warnings.showwarning = audit.record
                torch.set_warn_always(True)
                torch.cuda.set_sync_debug_mode("warn")

        def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if audit is not None:
                torch.cuda.set_sync_debug_mode("default")
            clock.end_fit()

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            clock.start_epoch()

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if audit is not None:
                audit.start_step((trainer.global_step + 1) % trainer.log_every_n_steps == 0)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            images = batch[0] if isinstance(batch, tuple | list) else batch  # (images, labels)
            clock.batch_done(len(images))

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            clock.end_epoch()

        def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            # Lightning validates inside the training epoch, after its last batch and before
            # on_train_epoch_end: the epoch's training time ends here.
            if not trainer.sanity_checking:
                clock.end_epoch()
            if audit is not None:
                audit.paused = True

        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if audit is not None:
                audit.paused = False

    return Timing()


def worker_betavae(args: argparse.Namespace) -> None:
    import betavae.apps.train as train_app
    import betavae.training.pipeline as pipeline

    clock = EpochClock(torch.device(args.device))
    audit = SyncAudit() if args.sync_audit else None

    # The changes to the real entry point: the timing callback joins the default ones, and
    # `--accel compile...` compiles the VAE as a user's option would.
    default_callbacks = pipeline.build_callbacks
    timing = timing_callback(clock, audit)
    pipeline.build_callbacks = lambda *a, **k: [*default_callbacks(*a, **k), timing]
    if args.accel in COMPILE_MODES:
        default_module = pipeline.build_module

        def compiled_module(*a, **k):
            module = default_module(*a, **k)
            module.vae.compile(mode=COMPILE_MODES[args.accel])
            return module

        pipeline.build_module = compiled_module
    with tempfile.TemporaryDirectory() as outputs:
        sys.argv = ["betavae-train", *args.overrides, f"paths.output_dir={outputs}"]
        sys.argv += [f"hydra.run.dir={outputs}/run"]
        try:
            train_app.main()
        except SystemExit as end:
            if end.code not in (0, None):
                raise
        metrics = json.loads((Path(outputs) / "run" / "metrics.json").read_text())
    extra = {} if audit is None else {"sync_audit": audit.summary()}
    report(clock, args, metrics["test/elbo"], **extra)


WORKERS = {
    "betavae": worker_betavae,
    "classic": worker_classic,
    "fastest": worker_fastest,
    "graph": worker_graph,
    "lightning": worker_lightning,
}
