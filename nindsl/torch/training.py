"""Stage 5: train the PyTorch twin as the spec's ``train`` section says.

As the paper (and Caffe) did: SGD with momentum; weight decay on convolution and dense
weights, not on biases or batch-norm scales; each layer's ``lr_scale`` and the section's
``bias_lr_scale`` multiply the learning rate; the schedule (step, multistep, cosine,
constant) sets it per epoch; dropout where the spec puts it; initial weights from
:func:`nindsl.weights.initial_weights`, as every backend draws them. Rank 0 writes,
each file atomically and none of them a pickle::

    OUT/last.safetensors        weights after the last finished epoch
    OUT/best.safetensors        weights with the best held-out accuracy (`--weights OUT` reads it)
    OUT/last.state.safetensors  weights, momentum buffers and progress, for --resume
    OUT/metrics.json            one record per epoch (and metrics.csv, TensorBoard events,
                                curves.png: see :mod:`nindsl.torch.logs`)

Every random stream (shuffling, dropout, crops and flips) is derived from (seed, epoch,
rank), so a run resumed after an interruption ends with the same weights as one that never
stopped. With ``patience`` it stops after that many epochs without a better held-out
accuracy; ``best.safetensors`` keeps the best.
Under ``torchrun`` (WORLD_SIZE > 1) it trains with DistributedDataParallel: gloo on CPU,
NCCL on GPU; the spec's batch is the global batch, split evenly across the processes.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..kernel.diagnostics import NindslError
from ..kernel.io import Kind, atomic_write_text, ensure_folder
from ..kernel.outputs import Output, claim
from ..kernel.machine import checked_threads, free_cpus, max_threads
from ..kernel.progress import SILENT, Progress
from ..kernel.version import __version__
from ..language import ir
from ..weights import check_weights, initial_weights, read_tensors, save_weights
from .data import classes, load_data
from .images import centre_crop
from .logs import EVENTS, plot_curves, write_csv, write_events
from .twin import load_state, twin_class

STATE = "last.state.safetensors"
#: The files a run writes in its --out folder.
RUN_FILES = ("best.safetensors", "last.safetensors", STATE, "metrics.json", "metrics.csv", EVENTS, "curves.png")
EVAL_CHUNK = 1000  # examples per forward pass when evaluating


# --- the recipe ---------------------------------------------------------------------------


def learning_rate(config: ir.TrainConfig, epoch: int, epochs: int) -> float:
    """The base learning rate during ``epoch`` (counted from 0) of ``epochs``.

    >>> learning_rate(ir.TrainConfig(optimizer=ir.Sgd(0.1), schedule=ir.Schedule("step", every=2)), 3, 6)
    0.010000000000000002
    """
    lr, schedule = config.optimizer.lr, config.schedule
    if schedule.kind == "step":
        return lr * schedule.gamma ** (epoch // schedule.every)
    if schedule.kind == "multistep":
        return lr * schedule.gamma ** sum(epoch >= m for m in schedule.milestones)
    if schedule.kind == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    return lr


def param_groups(network: ir.Network, twin: torch.nn.Module) -> list[dict]:
    """SGD parameter groups: one per (learning-rate scale, weight decay) pair."""
    from ..language.layers import training as layer_training  # per-stage scales of an mlpconv

    owners = {w.name: (layer, w) for layer, s in zip(network.layers, network.shapes) for w in s.weights}
    config = network.train
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in twin.named_parameters():
        layer, weight = owners[name]
        scale = layer_training(layer, weight, config.bias_lr_scale).lr_scale  # per stage for an mlpconv
        decays = weight.role == "weight"  # not biases, nor batch norm's scales
        groups.setdefault((scale, config.optimizer.weight_decay if decays else 0.0), []).append(param)
    return [{"params": params, "lr_scale": scale, "weight_decay": decay} for (scale, decay), params in groups.items()]


class Scores(torch.nn.Module):
    """The twin without its final softmax: what cross-entropy takes (and DDP wraps)."""

    def __init__(self, twin: torch.nn.Module):
        super().__init__()
        self.twin = twin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twin.logits(x)


# --- processes and devices --------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in a torchrun job (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _ranks(device: str) -> Ranks:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    import torch.distributed as dist

    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                  int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=ranks.rank, world_size=world)
    return ranks


def _device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise NindslError.one("E0504", f"unknown device `{device}`", None, "use --device cpu or --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise NindslError.one("E0504", "--device cuda, but PyTorch sees no CUDA GPU", None, "use --device cpu")


def training_threads(ranks: Ranks, threads: int | None = None) -> int:
    """``--threads``; else OMP_NUM_THREADS when set for a single process; else the cores no
    other work keeps busy, shared by this node's processes."""
    if threads is not None:
        return checked_threads(threads)
    if ranks.world == 1 and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return min(max(1, int(os.environ["OMP_NUM_THREADS"])), max_threads())
    return max(1, free_cpus() // ranks.local_world)


def _all_sum(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if ranks.world > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


def _stream_seed(seed: int, epoch: int, rank: int, stream: int = 0) -> int:
    """The seed of one random stream: 0 shuffles and drops out, 1 crops and flips."""
    entropy = [seed, epoch, rank] + ([stream] if stream else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


# --- augmentation and preprocessing ----------------------------------------------------------------


class Prepare:
    """What a batch goes through before the twin: in training, a random crop of the input's
    size from the image padded by ``crop_pad`` (or from an image stored larger, at ``resize``)
    and a random horizontal flip; always, ``(x − mean) / std``. Random draws come from the
    generator given per epoch, so they resume exactly."""

    def __init__(self, config: ir.TrainConfig, shape: tuple, device: torch.device):
        self.pad, self.flip = config.crop_pad, config.flip
        self.size = tuple(shape[2:]) if len(shape) == 4 else ()
        channels = shape[1] if len(shape) == 4 else 1
        view = (1, -1, 1, 1) if len(shape) == 4 else (1, -1)

        def per_channel(values: tuple[float, ...], default: float) -> torch.Tensor:
            values = values or (default,)
            return torch.tensor(values * (channels if len(values) == 1 else 1), device=device).view(view)

        self.mean, self.std = per_channel(config.mean, 0.0), per_channel(config.std, 1.0)
        self.normalises = bool(config.mean or config.std)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.size and (self.pad or tuple(x.shape[2:]) != self.size):
            x = self._random_crop(x, generator)
        if self.size and self.flip:
            mirrored = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(mirrored.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
        return self.normalise(x)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.normalises else x

    def _random_crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        (height, width), count = self.size, len(x)
        top = torch.randint(0, x.shape[2] - height + 1, (count,), generator=generator).to(x.device)
        left = torch.randint(0, x.shape[3] - width + 1, (count,), generator=generator).to(x.device)
        rows = (top[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        index = torch.arange(count, device=x.device)[:, None, None, None]
        return x[index, torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]


# --- resuming ------------------------------------------------------------------------------------


@dataclass
class Settings:
    """What a run needs to be continued exactly: stored with every checkpoint."""

    epochs: int
    batch: int | None  # None until the data set is loaded: ir.default_batch of its size
    data: str
    seed: int
    history: list[dict] = field(default_factory=list)
    best_val_acc: float | None = None
    best_epoch: int = 0
    patience: int = 0

    def metadata(self, network: ir.Network) -> dict[str, str]:
        return {"nindsl": __version__, "network": network.name, "spec_hash": network.spec_hash,
                "epoch": str(len(self.history)), "epochs": str(self.epochs), "batch": str(self.batch),
                "data": self.data, "seed": str(self.seed), "best_epoch": str(self.best_epoch),
                "best_val_acc": json.dumps(self.best_val_acc), "history": json.dumps(self.history),
                "patience": str(self.patience)}

    @property
    def stopped_early(self) -> bool:
        """No better held-out accuracy for ``patience`` epochs."""
        return bool(self.patience and self.best_val_acc is not None
                    and len(self.history) - self.best_epoch >= self.patience)

    @property
    def complete(self) -> bool:
        return len(self.history) >= self.epochs or self.stopped_early


def _read_state(network: ir.Network, out: Path) -> tuple[Settings, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The settings, weights and momentum buffers of the run in ``out``, checked against ``network``."""
    path = out / STATE
    if not path.is_file():
        raise NindslError.one("E0301", f"nothing to resume: `{path}` does not exist", None,
                              "run without --resume to start training, or pass the --out of the run")
    tensors, meta = read_tensors(path)
    if meta.get("spec_hash") != network.spec_hash:
        raise NindslError.one("E0502", f"`{path}` belongs to another spec (network `{meta.get('network', '?')}`, "
                                       f"spec sha256 {str(meta.get('spec_hash'))[:12]}…), not to `{network.name}` "
                                       f"({network.spec_hash[:12]}…)", network.input.span,
                              "resume with the spec and --set values the run started with, or train into "
                              "another --out")
    try:
        settings = Settings(int(meta["epochs"]), int(meta["batch"]), meta["data"], int(meta["seed"]),
                            json.loads(meta["history"]), json.loads(meta["best_val_acc"]), int(meta["best_epoch"]),
                            int(meta.get("patience", "0")))
    except (KeyError, ValueError, TypeError, RecursionError) as error:
        raise NindslError.one("E0502", f"`{path}` is damaged: its metadata lacks or garbles {error}", None) from None
    weights = check_weights(network, {n[len("weight."):]: t for n, t in tensors.items() if n.startswith("weight.")},
                            str(path))
    momentum = {n[len("momentum."):]: t for n, t in tensors.items() if n.startswith("momentum.")}
    trainable = {w.name: w.shape for w in network.weights if w.trainable}
    if momentum and {n: tuple(t.shape) for n, t in momentum.items()} != trainable:
        raise NindslError.one("E0502", f"`{path}` is damaged: its momentum buffers do not match the weights", None)
    return settings, weights, momentum


def _settings(network: ir.Network, stored: Settings | None, **given) -> Settings:
    """Command-line values over the stored run's (which must not change) over the spec's."""
    if stored is None:
        config = network.train
        defaults = {"epochs": config.epochs, "batch": config.batch, "data": config.data, "seed": config.seed,
                    "patience": config.patience}
        return Settings(**{k: given[k] if given[k] is not None else v for k, v in defaults.items()})
    for key in ("batch", "data", "seed"):
        if given[key] is not None and given[key] != getattr(stored, key):
            raise NindslError.one("E0504", f"--{key} {given[key]} differs from the resumed run's "
                                           f"{getattr(stored, key)}", None,
                                  f"drop --{key}: a resumed run keeps its settings, so it ends as an "
                                  "uninterrupted one would")
    for key in ("epochs", "patience"):  # a finished run may go on for longer
        if given[key] is not None:
            setattr(stored, key, given[key])
    return stored


# --- one epoch ------------------------------------------------------------------------------------


def _run_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, epoch: int, settings: Settings, ranks: Ranks,
               progress: Progress, prepare: Prepare | None = None) -> dict[str, float]:
    """One pass over this rank's share of the training set; loss, accuracy and speed over all ranks."""
    from torch.utils.data import DistributedSampler

    torch.manual_seed(_stream_seed(settings.seed, epoch, ranks.rank))  # dropout
    augmenting = torch.Generator().manual_seed(_stream_seed(settings.seed, epoch, ranks.rank, stream=1))
    sampler = DistributedSampler(range(len(labels)), num_replicas=ranks.world, rank=ranks.rank, seed=settings.seed)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), device=images.device)
    batches = list(order.split(settings.batch // ranks.world))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()  # batch norm needs two examples
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=images.device)
    start = time.perf_counter()
    for step, index in enumerate(batches, 1):
        scores = model(prepare.train(images[index], augmenting) if prepare else images[index])
        loss = F.cross_entropy(scores, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals += torch.stack([loss.detach().double() * len(index), (scores.argmax(1) == labels[index]).sum(),
                               torch.tensor(len(index), device=images.device)])
        if step % 10 == 0 or step == len(batches):
            loss_sum, correct, count = totals.tolist()
            progress.status(f"epoch {epoch + 1}/{settings.epochs} step {step}/{len(batches)}  loss "
                            f"{loss_sum / count:.3f}  acc {correct / count:.1%}  "
                            f"{count / (time.perf_counter() - start):,.0f} img/s")
    elapsed = time.perf_counter() - start
    loss_sum, correct, count = _all_sum(totals, ranks).tolist()
    return {"loss": loss_sum / count, "acc": correct / count, "images_per_s": count / elapsed, "time_s": elapsed}


def _evaluate(twin: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, ranks: Ranks,
              prepare: Prepare | None = None) -> tuple[float, float]:
    """Held-out loss and accuracy; each rank scores every world-th chunk."""
    twin.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=images.device)
    with torch.no_grad():
        for start in range(ranks.rank * EVAL_CHUNK, len(labels), ranks.world * EVAL_CHUNK):
            x, y = images[start: start + EVAL_CHUNK], labels[start: start + EVAL_CHUNK]
            scores = twin.logits(prepare.normalise(x) if prepare else x)
            totals += torch.stack([F.cross_entropy(scores, y, reduction="sum").double(),
                                   (scores.argmax(1) == y).sum(), torch.tensor(len(y), device=images.device)])
    loss_sum, correct, count = _all_sum(totals, ranks).tolist()
    return loss_sum / count, correct / count


STUCK_EPOCHS = 2  # epochs at chance level before train says so
STUCK_MARGIN = 0.01  # a loss within 1 % of ln(classes) has not moved from chance


def stuck_loss(history: list[dict], classes: int, epochs: int) -> str | None:
    """A warning, once (after :data:`STUCK_EPOCHS` epochs, or the only one), when the training loss
    has stayed at ln(classes), the loss of outputs that say nothing: the network is not learning."""
    seen = min(STUCK_EPOCHS, epochs)
    chance = math.log(classes) if classes > 1 else 0.0
    if len(history) != seen or chance == 0.0 \
            or any(abs(r["loss"] - chance) > STUCK_MARGIN * chance for r in history):
        return None
    return (f"warning: the loss is stuck at ln({classes}) = {chance:.4f} after {seen} epoch{'s' * (seen > 1)}, "
            "the loss of outputs that say nothing: the network is not learning. Try init = kaiming() (small "
            "normal inits vanish through deep ReLU stacks), another learning rate (lr in the train section's "
            "optimizer), and check that the labels match the images")


def _epoch_line(record: dict) -> str:
    val = f"  val loss {record['val_loss']:.4f} acc {record['val_acc']:.1%}" if record["val_acc"] is not None else ""
    return (f"epoch {record['epoch']:>3}  loss {record['loss']:.4f}  acc {record['acc']:.1%}{val}  "
            f"lr {record['lr']:.4g}  {record['images_per_s']:,.0f} img/s  {record['time_s']:.1f} s")


# --- checkpoints ----------------------------------------------------------------------------------


def _checkpoint(out: Path, network: ir.Network, twin: torch.nn.Module, optimizer: torch.optim.Optimizer,
                settings: Settings, improved: bool, world: int) -> None:
    """Write best (if improved), last, the resume state, then metrics; each atomically."""
    weights = {name: t.detach().cpu().numpy() for name, t in twin.state_dict().items()}
    meta = settings.metadata(network)
    model_meta = {k: meta[k] for k in ("nindsl", "network", "spec_hash", "epoch")}
    model_meta["val_acc"] = json.dumps(settings.history[-1]["val_acc"])
    if improved:
        save_weights(out / "best.safetensors", weights, model_meta)
    save_weights(out / "last.safetensors", weights, model_meta)
    state = {f"weight.{name}": value for name, value in weights.items()}
    for name, param in twin.named_parameters():
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            state[f"momentum.{name}"] = buffer.detach().cpu().numpy()
    save_weights(out / STATE, state, meta)
    metrics = {"network": network.name, "spec_hash": network.spec_hash, "epochs": settings.epochs,
               "batch": settings.batch, "data": settings.data, "seed": settings.seed, "world_size": world,
               "best_epoch": settings.best_epoch, "best_val_acc": settings.best_val_acc, "history": settings.history}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    write_csv(out, settings.history)
    write_events(out, settings.history)


# --- the API --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOptions:
    """How to run training; ``None`` keeps the spec's ``train`` section value."""

    data: str | None = None
    epochs: int | None = None
    batch: int | None = None
    out: str | Path | None = None  # default runs/NETWORK
    resume: bool = False
    device: str = "cpu"
    seed: int | None = None
    patience: int | None = None  # epochs without a better held-out accuracy before stopping; 0: never
    threads: int | None = None  # default: the cores no other work keeps busy


def train(network: ir.Network, options: TrainOptions | None = None, progress: Progress = SILENT) -> dict:
    """Train the twin of ``network``; checkpoints and metrics go to ``options.out``.

    Returns the run's history, best held-out accuracy and epoch, output folder and wall time.
    Only rank 0 of a torchrun job reports progress.
    """
    options = options or TrainOptions()
    _device(options.device)
    config = network.train
    if config.optimizer.nesterov and not config.optimizer.momentum:
        raise NindslError.one("E0107", "nesterov needs momentum > 0", config.span, "set `momentum = 0.9`")
    ranks = _ranks(options.device)
    out = Path(options.out or Path("runs") / network.name)
    shown = progress if ranks.main else SILENT
    try:
        kind = _run_folder(out, options.resume)  # (every rank: a refusal stops them all)
        with claim([Output("--out", out, kind)] if ranks.main else []):
            return _train(network, replace(options, out=out), shown, ranks)
    except KeyboardInterrupt:
        if (out / STATE).exists():
            shown.note(f"interrupted: `--resume --out {out}` continues from the last finished epoch")
        raise
    finally:
        if ranks.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(network: ir.Network, options: TrainOptions, progress: Progress, ranks: Ranks) -> dict:
    start = time.perf_counter()
    torch.set_num_threads(training_threads(ranks, options.threads))
    device, out = options.device, Path(options.out)
    where = torch.device(device, ranks.local_rank) if device == "cuda" else torch.device("cpu")
    stored, weights, momentum = _earlier_run(network, out, options.resume)
    settings = _settings(network, stored, epochs=options.epochs, batch=options.batch, data=options.data,
                         seed=options.seed, patience=options.patience)
    done = len(settings.history)
    result = {"out": str(out), "epochs": settings.epochs, "first_epoch": done + 1, "trained": 0,
              "rank": ranks.rank, "world_size": ranks.world}
    if stored is not None and _nothing_left(network, settings, progress):
        return {**result, **_outcome(settings), "wall_s": time.perf_counter() - start}
    dataset = _training_data(network, settings, ranks)
    if not options.resume:
        weights = initial_weights(network, settings.seed)

    twin, optimizer, model = _model(network, weights, momentum, where, ranks, device)
    images, labels, val_images, val_labels = _tensors(network, dataset, where)
    prepare = Prepare(network.train, network.input.shape, where)
    if ranks.main:
        ensure_folder(out, "the output folder")
    chosen = " (the default for this many examples)" if network.train.batch is None and options.batch is None else ""
    progress.note(f"training on `{settings.data}`: {len(labels):,} examples, {len(val_labels):,} held out; "
                  f"batch {settings.batch}{chosen}; "
                  f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}"
                  f"{f' × {ranks.world} processes' if ranks.world > 1 else ''}")

    for epoch in range(len(settings.history), settings.epochs):
        lr = learning_rate(network.train, epoch, settings.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        record = {"epoch": epoch + 1, **_run_epoch(model, optimizer, images, labels, epoch, settings, ranks, progress,
                                                   prepare)}
        val_loss, val_acc = _evaluate(twin, val_images, val_labels, ranks, prepare) if len(val_labels) else \
            (None, None)
        record.update(val_loss=val_loss, val_acc=val_acc, lr=lr)
        settings.history.append(record)
        improved = val_acc is None or settings.best_val_acc is None or val_acc > settings.best_val_acc
        if improved:
            settings.best_val_acc, settings.best_epoch = val_acc, epoch + 1
        if ranks.main:
            _checkpoint(out, network, twin, optimizer, settings, improved, ranks.world)
        progress.note(_epoch_line(record))
        stuck = stuck_loss(settings.history, int(network.output.shape[-1]), settings.epochs)
        if stuck:
            progress.note(stuck)
        result["trained"] += 1
        if settings.stopped_early:
            progress.note(f"stopping early: no better held-out accuracy for {settings.patience} epochs"
                          f"{_best(settings)}")
            break
    if ranks.main:
        _curves(out, network, settings, progress)
    return {**result, **_outcome(settings), "wall_s": time.perf_counter() - start}


def _run_folder(out: Path, resume: bool) -> Kind:
    """What ``--out`` may be: a run to resume, or (for a new run) a folder that holds none of the
    files a run writes: the user's own files beside them are kept, never replaced."""
    if not resume and (out / STATE).exists():
        raise NindslError.one("E0504", f"`{out}` already holds a training run", None,
                              "pass --resume to continue it, or choose another --out")
    if resume:
        return Kind("a training run", lambda folder: True, folder=True)  # (_read_state checks it is one)
    return Kind("a folder for a new training run", lambda folder: True, folder=True,
                strangers=lambda folder: [name for name in RUN_FILES if os.path.lexists(folder / name)])


def _earlier_run(network: ir.Network, out: Path, resume: bool) -> tuple[Settings | None, dict | None, dict]:
    """With --resume, the stored run's settings, weights and momentum; else nothing (``out``
    holds no run: :func:`_run_folder`)."""
    return _read_state(network, out) if resume else (None, None, {})


def _nothing_left(network: ir.Network, settings: Settings, progress: Progress) -> bool:
    """Whether a resumed run has already finished (it says why); else it says where it resumes."""
    done, best = len(settings.history), _best(settings)
    if settings.complete:
        why = (f"it stopped early at epoch {done}: no better held-out accuracy for {settings.patience} epochs"
               if settings.stopped_early and done < settings.epochs else f"it has trained all {done} epochs")
        progress.note(f"nothing to do: {why}{best}; pass a larger --epochs"
                      f"{' or --patience' if settings.stopped_early else ''} to train further")
        return True
    progress.note(f"resuming {network.name} at epoch {done + 1} of {settings.epochs}{best}")
    return False


def _training_data(network: ir.Network, settings: Settings, ranks: Ranks):
    """The run's data set, once the batch splits over the processes and patience has held-out
    examples; a batch the spec and the command line leave open is chosen by the data set's size."""
    if settings.batch is not None and settings.batch % ranks.world:
        raise NindslError.one("E0504", f"batch {settings.batch} does not split evenly over {ranks.world} processes",
                              None, "use a batch size that is a multiple of --nproc-per-node")
    classes(network)
    dataset = load_data(network, settings.data)
    if settings.batch is None:
        settings.batch = ir.default_batch(len(dataset.train_labels), ranks.world)
    if settings.patience and not len(dataset.val_labels):
        raise NindslError.one("E0504", f"patience {settings.patience} needs held-out examples; `{settings.data}` "
                                       "has none", network.train.span, "set `val_split` above 0, or drop patience")
    return dataset


def _model(network: ir.Network, weights: dict[str, np.ndarray], momentum: dict[str, np.ndarray],
           where: torch.device, ranks: Ranks, device: str):
    """The twin with ``weights`` on ``where``, its SGD (momentum buffers restored) and the module
    that trains (the twin's scores, wrapped by DistributedDataParallel under torchrun)."""
    twin = twin_class(network)()
    load_state(twin, weights)
    twin.to(where)
    sgd = network.train.optimizer
    optimizer = torch.optim.SGD(param_groups(network, twin), lr=sgd.lr, momentum=sgd.momentum, nesterov=sgd.nesterov)
    for name, param in twin.named_parameters():
        if name in momentum:
            optimizer.state[param]["momentum_buffer"] = torch.tensor(momentum[name], device=where)
    model: torch.nn.Module = Scores(twin)
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[ranks.local_rank] if device == "cuda" else None)
    return twin, optimizer, model


def _tensors(network: ir.Network, dataset, where: torch.device) -> tuple[torch.Tensor, ...]:
    """Training images and labels, and held-out ones (centre-cropped to the input), on ``where``."""
    shape = network.input.shape
    held = centre_crop(dataset.val_images, *shape[2:]) if len(shape) == 4 else dataset.val_images
    images, labels = (torch.from_numpy(a).to(where) for a in (dataset.train_images, dataset.train_labels))
    val_images, val_labels = (torch.from_numpy(np.ascontiguousarray(a)).to(where) for a in (held, dataset.val_labels))
    return images, labels, val_images, val_labels


def _best(settings: Settings) -> str:
    if settings.best_val_acc is None:
        return ""
    return f" (best held-out accuracy {settings.best_val_acc:.2%} at epoch {settings.best_epoch})"


def _outcome(settings: Settings) -> dict:
    return {"best_val_acc": settings.best_val_acc, "best_epoch": settings.best_epoch, "history": settings.history,
            "stopped_early": settings.stopped_early}


def _curves(out: Path, network: ir.Network, settings: Settings, progress: Progress) -> None:
    """``curves.png`` at the end of a run (matplotlib is optional: without it, say so)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        progress.note("no curves.png: matplotlib is not installed (pip install 'nindsl[all]')")
        return
    plot_curves(settings.history, out / "curves.png", f"{network.name}: {settings.data}")
