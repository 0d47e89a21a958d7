"""`vdeblur train`: the paper's training recipe, resumable bit-for-bit, on a CPU or GPUs (torchrun).

Recipe (section 3.3 and the official code): multi-scale MSE over the three outputs, each against
the sharp image resized to its scale, plus ``grad_weight`` (2.5) times the MSE of the horizontal
and vertical [1, -1] differences of the grayscale finest output and target; Adam (0.9, 0.999,
1e-8), learning rate decayed polynomially with power 0.3 to 0 over all steps; random crops and
flips.

A run lives in one directory. Each checkpoint is two files written atomically, then named in
``latest.json`` (also atomic), so an interrupted write never leaves a half checkpoint in use:
- ``step-NNNNNNN.safetensors``: the fp32 weights and model config (a normal vdeblur checkpoint);
- ``step-NNNNNNN.state.pt``: optimizer moments, step, RNG and recipe, only tensors and plain
  containers, read back with ``torch.load(weights_only=True)`` so it cannot run code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import read_checkpoint, save_state
from .fileio import atomic_write, cache_root, check_folder
from .errors import VdeblurError
from .hardware import check_threads, cpu_bf16_kind, cpu_description, cpu_name, resolve_device, resolve_precision
from .network import DeblurNet, ModelConfig, count_parameters, resize_bilinear
from .signals import TERMINATING

KEEP_CHECKPOINTS = 3
DEFAULT_LOG_EVERY = 50
_GRAY = (0.299, 0.587, 0.114)


@dataclass
class Recipe:
    """Everything that decides what a run computes; saved with every checkpoint."""

    steps: int = 100_000
    batch: int = 16
    crop: int = 256
    lr: float = 1e-4
    lr_power: float = 0.3
    grad_weight: float = 2.5
    seed: int = 0
    data: list[str] = field(default_factory=list)        # folders of real blur/sharp pairs
    photos: list[str] = field(default_factory=list)      # folders of sharp photos for synthetic blur
    builtin_photos: bool = True                          # scikit-image's photos + dead leaves
    synthetic: bool = True
    synthetic_fraction: float = 0.75                     # share of synthetic samples when real pairs exist
    precision: str = "auto"
    model: dict = field(default_factory=lambda: ModelConfig(global_residual=True).to_dict())
    init_weights: str = ""                               # start from these weights (fine-tuning), "" = fresh init
    init_sha256: str = ""

    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def check(self) -> None:
        """One-line errors for values no run can use (before anything is printed or loaded)."""
        for name, value, low in (("--steps", self.steps, 1), ("--batch", self.batch, 1), ("--crop", self.crop, 16)):
            if value < low:
                raise VdeblurError(f"{name} must be at least {low}, got {value}")
        if self.crop > MAX_CROP:   # 100000 was a MemoryError traceback making the first sample
            raise VdeblurError(f"--crop must be at most {MAX_CROP}, got {self.crop}")
        multiple = self.config().size_multiple
        if self.crop % multiple:
            raise VdeblurError(f"--crop {self.crop} must be a multiple of {multiple}")
        if not (0.0 <= self.synthetic_fraction <= 1.0):
            raise VdeblurError(f"--synthetic-fraction must be in [0, 1], got {self.synthetic_fraction}")
        if not 0 < self.lr < math.inf:   # NaN too
            raise VdeblurError(f"--lr must be a positive number, got {self.lr}")
        for name, value in (("--lr-power", self.lr_power), ("--grad-weight", self.grad_weight)):
            if not 0 <= value < math.inf:   # power 0: a constant rate
                raise VdeblurError(f"{name} must be a number >= 0, got {value}")
        if not self.synthetic and not self.data:
            raise VdeblurError("--no-synthetic needs --data DIR with blur/sharp pairs")
        if not 0 <= self.seed < 2**63:   # torch's and numpy's seeds
            raise VdeblurError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}")


# ----------------------------------------------------------------------------- losses

def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of [1, -1] differences (horizontal + vertical) of the grayscale images (official code)."""
    p, t = _gray(pred), _gray(target)
    dx = F.mse_loss(p[..., :, 1:] - p[..., :, :-1], t[..., :, 1:] - t[..., :, :-1])
    dy = F.mse_loss(p[..., 1:, :] - p[..., :-1, :], t[..., 1:, :] - t[..., :-1, :])
    return dx + dy


def recipe_loss(outputs: list[torch.Tensor], sharp: torch.Tensor, grad_weight: float) -> tuple[torch.Tensor, dict]:
    """Multi-scale MSE over the pyramid (coarse -> fine) + grad_weight * gradient loss on the finest."""
    outputs = [o.float() for o in outputs]
    mse = sum(F.mse_loss(o, resize_bilinear(sharp, tuple(o.shape[-2:]))) for o in outputs)
    grad = gradient_loss(outputs[-1], sharp)
    total = mse + grad_weight * grad
    return total, {"mse": float(mse.detach()), "grad": float(grad.detach())}


def poly_lr(step: int, base: float, total: int, power: float) -> float:
    """base * (1 - step/total)^power: the paper's decay to 0."""
    return base * max(0.0, 1.0 - step / max(total, 1)) ** power


# ----------------------------------------------------------------------------- precision

#: The largest training crop: 8x the paper's 256.
MAX_CROP = 2048


class Diverged(VdeblurError):
    """A step whose loss or gradient is not finite: the update would have made every weight NaN."""


def training_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 on a GPU that has it (no loss scaling needed), fp16 on older GPUs,
    bf16 on a CPU with native bf16, fp32 elsewhere."""
    if requested == "auto" and device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return resolve_precision(requested, device)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------- the trainer

def _init_checkpoint(recipe: Recipe):
    """The checkpoint a fine-tuning run starts from, checked to be the file the recipe names."""
    from .checkpoint import file_sha256

    ckpt = read_checkpoint(recipe.init_weights)
    if recipe.init_sha256 and file_sha256(recipe.init_weights) != recipe.init_sha256:
        raise VdeblurError(f"{recipe.init_weights}: changed since the run started (sha256 differs)")
    return ckpt


class _Pyramid(nn.Module):
    """Exposes ``forward_pyramid`` as ``forward``, the only method DDP synchronises gradients for."""

    def __init__(self, model: DeblurNet):
        super().__init__()
        self.model = model

    def forward(self, blurry: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_pyramid(blurry)


class Trainer:
    """Model + optimizer + step counter; one ``train_step`` per batch."""

    def __init__(self, recipe: Recipe, device: torch.device, precision: str, ddp: bool = False,
                 init: bool = True):
        """``init=False`` on resume: the checkpoint replaces the starting weights, so the
        ``--init-weights`` file need not exist, or be unchanged, any more."""
        self.recipe, self.device, self.precision = recipe, device, precision
        torch.manual_seed(recipe.seed)
        self.model = DeblurNet(recipe.config())
        if recipe.init_weights and init:
            self.model.load_state_dict(_init_checkpoint(recipe).state, strict=True)
        self.model = self.model.to(device)
        self.net: nn.Module = _Pyramid(self.model)
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.net, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.step = 0
        self.elapsed = 0.0  # training seconds over all sessions of the run
        self.compiled = False
        self.log_every = DEFAULT_LOG_EVERY   # kept in the state: a resumed run logs as it began

    def lr(self) -> float:
        r = self.recipe
        return poly_lr(self.step, r.lr, r.steps, r.lr_power)

    def train_step(self, blur: torch.Tensor, sharp: torch.Tensor) -> tuple[float, dict]:
        self.net.train()
        blur = blur.to(self.device, non_blocking=True)
        sharp = sharp.to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()
        with autocast(self.device, self.precision):
            outputs = self.net(blur)
        loss, parts = recipe_loss(outputs, sharp, self.recipe.grad_weight)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if not self.scaler.is_enabled():   # fp16's scaler skips a step whose gradients overflowed itself
            # Gradients, not the loss: DDP made them the same on every rank, so every rank stops.
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads))).all():
                raise Diverged(f"the loss or its gradient is not finite at step {self.step + 1} "
                               f"(loss {float(loss.detach()):g}, lr {self.lr():.2e}): training diverged")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return float(loss.detach()), parts

    # -- checkpoints
    def state(self) -> dict:
        return {
            "format": "vdeblur-train-state",
            "version": 1,
            "step": self.step,
            "elapsed_s": self.elapsed,
            "recipe": json.dumps(asdict(self.recipe), sort_keys=True),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "world_size": _world(),
            "log_every": self.log_every,
        }

    def environment(self) -> dict:
        """What the numbers depend on besides the recipe: a model card can then say how a step ran."""
        from . import __version__

        env = {"device": str(self.device), "precision": self.precision, "world_size": _world(),
               "torch_compile": self.compiled, "vdeblur": __version__, "torch": torch.__version__}
        if self.device.type == "cpu":
            env.update(threads=torch.get_num_threads(), cpu=cpu_name(), cpu_bf16=cpu_bf16_kind())
        elif self.device.type == "cuda":
            env.update(gpu=torch.cuda.get_device_name(self.device), cuda=torch.version.cuda)
        return env

    def load(self, weights: Path, state: dict) -> None:
        ckpt = read_checkpoint(weights)
        try:
            self.model.load_state_dict(ckpt.state, strict=True)
        except RuntimeError as e:   # torch's message runs over many lines: the first two say what
            said = " ".join(" ".join(str(e).splitlines()[:2]).split())
            raise VdeblurError(f"{weights}: not weights of this run's network ({said})") from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise VdeblurError(f"{weights.parent}: the training state does not fit its weights "
                               f"({type(e).__name__}: {e})") from None
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed_s"])
        saved_log_every = state.get("log_every")   # absent from states saved before it was kept
        if type(saved_log_every) is int and saved_log_every >= 1:
            self.log_every = saved_log_every


def _json_line(record: dict) -> str:
    """Strict JSON (jq and JavaScript refuse a bare NaN): a number that is not finite is null."""
    return json.dumps({k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in record.items()},
                      allow_nan=False)


def save_run_checkpoint(run_dir: Path, trainer: Trainer) -> Path:
    """Weights + sidecar for the current step, then point latest.json at them; keep the last few."""
    run_dir.mkdir(parents=True, exist_ok=True)
    stem = f"step-{trainer.step:07d}"
    r = trainer.recipe
    extra = {"trained_steps": trainer.step, "samples_seen": trainer.step * r.batch * _world(),
             "training_seconds": round(trainer.elapsed, 1), "recipe": asdict(r),
             "environment": trainer.environment()}
    weights = save_state(run_dir / f"{stem}.safetensors", trainer.model.config,
                         {k: v.float() if v.is_floating_point() else v for k, v in trainer.model.state_dict().items()}, extra)
    state = trainer.state()
    atomic_write(run_dir / f"{stem}.state.pt", lambda f: torch.save(state, f))
    index = json.dumps({"step": trainer.step, "weights": weights.name, "state": f"{stem}.state.pt"}, indent=2) + "\n"
    atomic_write(run_dir / "latest.json", lambda f: f.write(index.encode()))
    old = sorted(run_dir.glob("step-*.safetensors"))[:-KEEP_CHECKPOINTS]
    for w in old:
        w.unlink(missing_ok=True)
        w.with_name(w.name.replace(".safetensors", ".state.pt")).unlink(missing_ok=True)
    return weights


def load_run_state(run_dir: Path) -> tuple[Path, dict]:
    """The latest checkpoint of a run: (weights path, sidecar dict). One-line errors for a bad directory."""
    latest = run_dir / "latest.json"
    if not latest.is_file():
        raise VdeblurError(f"{run_dir}: not a vdeblur training run (no latest.json)")
    try:
        info = json.loads(latest.read_text())
        weights, state_path = run_dir / info["weights"], run_dir / info["state"]
    except (ValueError, KeyError, TypeError):
        raise VdeblurError(f"{latest}: damaged run index") from None
    try:
        with warnings.catch_warnings():   # torch's notes on a refused pickle would come before the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(state_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VdeblurError(f"{state_path}: training state file is missing") from None
    except Exception as e:  # noqa: BLE001 - torch raises assorted errors for damaged/foreign files
        raise VdeblurError(f"{state_path}: unreadable training state ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != "vdeblur-train-state":
        raise VdeblurError(f"{state_path}: not a vdeblur training state")
    try:   # whole, and of this version's recipe, before any of it is used
        recipe = Recipe(**json.loads(state["recipe"]))
        if not isinstance(state["optimizer"], dict) or not isinstance(state["torch_rng"], torch.Tensor):
            raise TypeError("optimizer or RNG state")
        if int(state["step"]) < 0 or not float(state["elapsed_s"]) >= 0:
            raise ValueError("a negative step or training time")
        recipe.config()   # the network it describes
    except (KeyError, TypeError, ValueError) as e:
        raise VdeblurError(f"{state_path}: damaged training state, or one another vdeblur version wrote "
                           f"({type(e).__name__}: {e})") from None
    return weights, state


# ----------------------------------------------------------------------------- data + loop

def _drop_unsaved_log(log_path: Path, step: int) -> None:
    """Keep the log lines of steps the checkpoint holds: after a kill -9 the steps past it are
    trained again, and their old lines (and a half-written last one) would be logged twice."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
            kept.append(line)
    text = "".join(f"{line}\n" for line in kept)
    if text != log_path.read_text(errors="replace"):
        atomic_write(log_path, lambda f: f.write(text.encode()))


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def build_samples(recipe: Recipe):
    from .datasets import PairedCrops, TrainingSamples
    from .synthetic import make_generator

    real = PairedCrops(recipe.data, recipe.crop) if recipe.data else None
    synthetic = None
    if recipe.synthetic:
        synthetic = make_generator(recipe.photos, builtin=recipe.builtin_photos, split="train", size=recipe.crop)
    return TrainingSamples(recipe.seed, real, synthetic, recipe.synthetic_fraction)


def _init_distributed() -> tuple[int, int, torch.device | None]:
    """(rank, world, device) from torchrun's environment; (0, 1, None) when not launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        device = torch.device("cuda", local)
    else:
        dist.init_process_group("gloo")
        device = torch.device("cpu")
    return dist.get_rank(), world, device


def train(recipe: Recipe, run_dir: Path, *, resume: bool = False, device: str = "auto",
          checkpoint_minutes: float = 10.0, time_limit_minutes: float | None = None,
          workers: int | None = None, progress: bool = True, log_every: int | None = None, stop_at_step: int | None = None,
          compile: bool = False) -> Trainer:
    """Run (or continue) training until ``recipe.steps``, a time limit, a signal, or ``stop_at_step``.

    ``log_every``: steps between log lines; None keeps a resumed run's own (50 for a new one).
    ``compile``: torch.compile the forward pass (measured 1.16x per step on a 2-core CPU in bf16
    after 161 s of compiling; the notes report 1.19x on an H100). Its caches persist like the
    torch backend's.
    """
    import torch.distributed as dist
    from tqdm import tqdm

    from .datasets import StepBatches, default_workers, loader

    rank, world, ddp_device = _init_distributed()
    dev = ddp_device or resolve_device(device)
    recipe.check()
    precision = training_precision(recipe.precision, dev)
    trainer = Trainer(recipe, dev, precision, ddp=world > 1, init=not resume)
    if resume:
        weights, state = load_run_state(run_dir)
        trainer.load(weights, state)
        saved_world = state.get("world_size")
        if rank == 0 and saved_world is not None and saved_world != world:
            print(f"vdeblur train: note: this run was trained with {saved_world} process(es) and goes on with "
                  f"{world}: each step now takes {recipe.batch * world} samples instead of "
                  f"{recipe.batch * saved_world}, and the data differ from an uninterrupted run",
                  file=sys.stderr, flush=True)
        if rank == 0:
            _drop_unsaved_log(run_dir / "log.jsonl", trainer.step)
    if log_every is not None:
        trainer.log_every = log_every
    log_every = trainer.log_every
    if compile:
        from .backends.torch_compile import use_compile_cache

        use_compile_cache()
        trainer.net = torch.compile(trainer.net)
        trainer.compiled = True
    samples = build_samples(recipe)
    end = min(recipe.steps, stop_at_step) if stop_at_step is not None else recipe.steps
    if workers is None:
        workers = default_workers(dev, world)
    batches = loader(samples, StepBatches(recipe.batch, trainer.step, rank, world, end), workers, pin_memory=dev.type == "cuda")

    stop = {"signal": None}

    def on_signal(signum, _frame):
        if os.getpid() != owner:   # a data loader process inherits the handler; the trainer's own answers
            return
        if stop["signal"] is not None:  # asked twice: stop now, without the checkpoint
            raise KeyboardInterrupt
        stop["signal"] = signum
        if main_thread:
            print(f"\nvdeblur train: signal {signum}: saving a checkpoint after this step (again to stop at once)",
                  file=sys.stderr, flush=True)

    main_thread, owner = rank == 0, os.getpid()
    old_handlers = {}
    # SIGHUP too (in TERMINATING): a closed terminal or a dropped ssh session saved nothing.
    for sig in (signal.SIGINT, *TERMINATING):
        try:
            old_handlers[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (e.g. under a test runner thread)
            pass

    log_path = run_dir / "log.jsonl"
    if main_thread:
        run_dir.mkdir(parents=True, exist_ok=True)
        print(f"vdeblur train: {'resuming' if resume else 'starting'} {run_dir} at step {trainer.step}/{recipe.steps}; "
              f"{count_parameters(trainer.model):,} parameters, {precision} on {dev}"
              + (f" x{world}" if world > 1 else "") + (f" ({cpu_description()})" if dev.type == "cpu" else "")
              + ("; torch.compile (the first step compiles)" if compile else ""),
              file=sys.stderr, flush=True)
    bar = tqdm(total=end, initial=trainer.step, disable=not (progress and main_thread), dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, unit="step")
    session_start = last_ckpt = last_tick = time.monotonic()
    tick_samples, ema = 0, None
    saved = {"step": trainer.step}

    def checkpointed(batches):
        """The batches; where reading one fails (an image damaged after its header), the steps done
        since the last checkpoint are saved before the error goes on."""
        it = iter(batches)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception:
                if main_thread and trainer.step > saved["step"]:
                    save_run_checkpoint(run_dir, trainer)
                    print(f"vdeblur train: saved a checkpoint at step {trainer.step} before stopping",
                          file=sys.stderr, flush=True)
                raise
            yield item

    try:
        for blur, sharp in checkpointed(batches):
            lr_used = trainer.lr()
            try:
                loss, parts = trainer.train_step(blur, sharp)
            except Diverged as e:   # nothing saved: the weights may already be what made it diverge
                last = (f"the last checkpoint, step {saved['step']} in {run_dir}, is from before it"
                        if saved["step"] else "no checkpoint was saved")
                raise Diverged(f"{e}; nothing is saved from it ({last}); start again from a good checkpoint "
                               "with --init-weights and a lower --lr") from None
            now = time.monotonic()
            trainer.elapsed += now - last_tick
            last_tick = now
            tick_samples += blur.shape[0] * world
            ema = loss if ema is None else 0.98 * ema + 0.02 * loss
            bar.update(1)
            if trainer.step % 10 == 0:
                bar.set_postfix(loss=f"{ema:.4f}", lr=f"{trainer.lr():.2e}",
                                sps=f"{trainer.step * recipe.batch * world / max(trainer.elapsed, 1e-9):.2f}", refresh=False)
            if main_thread and trainer.step % log_every == 0:
                rec = {"step": trainer.step, "loss": round(loss, 6), "loss_ema": round(ema, 6), **{k: round(v, 6) for k, v in parts.items()},
                       "lr": lr_used, "samples_per_s": round(tick_samples / max(now - session_start, 1e-9), 3),
                       "elapsed_s": round(trainer.elapsed, 1), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                with open(log_path, "a") as f:
                    f.write(_json_line(rec) + "\n")
                if not sys.stderr.isatty():
                    print(_json_line(rec), flush=True)
            due = now - last_ckpt >= checkpoint_minutes * 60
            out_of_time = time_limit_minutes is not None and now - session_start >= time_limit_minutes * 60
            flags = torch.tensor([float(due), float(out_of_time or stop["signal"] is not None)])
            if world > 1:
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            if flags[0] or flags[1]:
                if main_thread:
                    save_run_checkpoint(run_dir, trainer)
                    saved["step"] = trainer.step
                last_ckpt = time.monotonic()
                if flags[1]:
                    break
        else:
            if main_thread:
                save_run_checkpoint(run_dir, trainer)
    finally:
        bar.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    if main_thread:
        why = "finished" if trainer.step >= recipe.steps else f"stopped at step {trainer.step}"
        print(f"vdeblur train: {why}; checkpoint {run_dir / 'latest.json'} (step {trainer.step}, "
              f"{trainer.elapsed / 60:.1f} min of training)", file=sys.stderr, flush=True)
    if world > 1:
        dist.destroy_process_group()
    trainer.stopped_by = stop["signal"]
    return trainer


# ----------------------------------------------------------------------------- CLI

_RECIPE_FLAGS = ("steps", "batch", "crop", "lr", "lr_power", "grad_weight", "seed", "data", "photos",
                 "no_builtin_photos", "no_synthetic", "synthetic_fraction", "precision", "widths", "blocks",
                 "residual", "init_weights")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the network (paper's recipe) on GoPro-style pairs and/or synthetic blur",
        description="Train with the paper's recipe. Real pairs from --data (GoPro layout or *_blur/*_sharp files), "
                    "synthetic GoPro-like pairs made on the fly from --photos (and scikit-image's photos). "
                    "Multi-GPU: torchrun --standalone --nproc-per-node N -m vdeblur train ... (--batch is per process).")
    g = p.add_argument_group("recipe (saved in the run; not allowed with --resume)")
    g.add_argument("--data", action="append", metavar="DIR", help="folder of blur/sharp pairs (repeatable), e.g. GOPRO_Large/train")
    g.add_argument("--photos", action="append", metavar="DIR", help="folder of sharp photos for synthetic blur (repeatable; every 6th is held out for `vdeblur eval --synthetic`)")
    g.add_argument("--no-builtin-photos", action="store_true", default=None, help="do not use scikit-image's photos")
    g.add_argument("--no-synthetic", action="store_true", default=None, help="train on --data pairs only")
    g.add_argument("--synthetic-fraction", type=float, help="share of synthetic samples when --data is given (default 0.75)")
    g.add_argument("--steps", type=int, help="total steps; the learning rate decays to 0 over them (default 100000)")
    g.add_argument("--batch", type=int, help="samples per step per process (default: 16, the paper's)")
    g.add_argument("--crop", type=int, help="square crop size, a multiple of 16 (default: 256, the paper's)")
    g.add_argument("--lr", type=float, help="initial learning rate (paper: 1e-4)")
    g.add_argument("--lr-power", type=float, help="power of the polynomial decay (paper: 0.3)")
    g.add_argument("--grad-weight", type=float, help="weight of the gradient loss (official code: 2.5)")
    g.add_argument("--seed", type=int, help="seed of the initialisation and the data stream (default: 0)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="auto: bf16 on native-bf16 CPUs and bf16 GPUs, fp16 AMP on older GPUs, else fp32")
    g.add_argument("--widths", type=int, nargs=3, metavar=("W1", "W2", "W3"), help="channel widths (paper: 32 64 128)")
    g.add_argument("--blocks", type=int, help="residual attention blocks per group (paper: 3)")
    g.add_argument("--init-weights", type=Path, metavar="CKPT", help="start from these weights (fine-tune; fresh optimizer and schedule)")
    g.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None,
                   help="predict blurry + correction (default on: trains much faster; --no-residual is the paper's exact network)")
    r = p.add_argument_group("run")
    r.add_argument("--name", default="default", help="run name: state goes to $XDG_CACHE_HOME/vdeblur/runs/NAME (~/.cache/vdeblur/runs/NAME)")
    r.add_argument("--out", type=Path, help="run directory (overrides --name)")
    r.add_argument("--resume", action="store_true", help="continue the run in the run directory exactly where its last checkpoint left off")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    r.add_argument("--threads", type=int, help="torch CPU threads")
    r.add_argument("--workers", type=int, help="data loader processes (default: 0 on a CPU, up to 8 per GPU)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile the training step: a few minutes of compiling first, then ~1.2x faster (CPU and GPU)")
    r.add_argument("--checkpoint-minutes", type=float, default=10.0, help="minutes between checkpoints, and one at the end (default: 10)")
    r.add_argument("--time-limit", type=float, metavar="MINUTES", help="checkpoint and stop after this many minutes")
    r.add_argument("--log-every", type=int,
                   help=f"steps between log lines in RUN/log.jsonl (default: {DEFAULT_LOG_EVERY}; a resumed run keeps its own)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def recipe_from_args(args) -> Recipe:
    r = Recipe()
    for name in ("steps", "batch", "crop", "lr", "lr_power", "grad_weight", "seed", "synthetic_fraction", "precision"):
        value = getattr(args, name)
        if value is not None:
            setattr(r, name, value)
    r.data = [str(Path(d).resolve()) for d in (args.data or [])]
    r.photos = [str(Path(d).resolve()) for d in (args.photos or [])]
    r.builtin_photos = not args.no_builtin_photos
    r.synthetic = not args.no_synthetic
    cfg = r.config()
    if args.init_weights:
        from .checkpoint import file_sha256

        if args.widths or args.blocks is not None or args.residual is not None:
            raise VdeblurError("--init-weights takes the network shape from the checkpoint; drop --widths/--blocks/--residual")
        r.init_weights = str(Path(args.init_weights).resolve())
        cfg = read_checkpoint(r.init_weights).config
        r.init_sha256 = file_sha256(r.init_weights)
    changes = {}
    if args.widths:
        changes["widths"] = tuple(args.widths)
    if args.blocks is not None:
        changes["blocks_per_group"] = args.blocks
    if args.residual is not None:
        changes["global_residual"] = args.residual
    if changes:
        import dataclasses

        try:
            cfg = dataclasses.replace(cfg, **changes)
        except ValueError as e:
            raise VdeblurError(str(e)) from None
    r.model = cfg.to_dict()
    r.check()
    for folder in r.data + r.photos:
        check_folder(folder)
    return r


def _flag(name: str, value) -> str:
    return f"--{'no-' if value is False else ''}{name.replace('_', '-')}"


def _check_run_options(args) -> None:
    name = args.name
    if not args.out and (not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute()):
        raise VdeblurError(f"--name {name!r}: a run name is one folder name under {cache_root() / 'runs'}; "
                           f"give a path with --out instead")
    for option, value in (("--checkpoint-minutes", args.checkpoint_minutes), ("--time-limit", args.time_limit)):
        if value is not None and not 0 < value < math.inf:   # NaN too
            raise VdeblurError(f"{option} must be a positive number of minutes, got {value}")
    if args.log_every is not None and args.log_every < 1:
        raise VdeblurError(f"--log-every must be at least 1, got {args.log_every}")
    if args.no_synthetic and args.synthetic_fraction is not None:
        raise VdeblurError("--synthetic-fraction is the share of synthetic samples; --no-synthetic has none")
    if args.synthetic_fraction is not None and not args.data and not args.resume:
        raise VdeblurError("--synthetic-fraction mixes synthetic samples with the real pairs of --data; "
                           "without --data every sample is synthetic")


def run(args) -> int:
    _check_run_options(args)
    run_dir = (args.out or cache_root() / "runs" / args.name).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise VdeblurError(f"{run_dir}: not a folder; --out names the folder a run keeps its checkpoints in")
    if args.workers is not None and args.workers < 0:
        raise VdeblurError(f"--workers must be 0 or more, got {args.workers}")
    check_threads(args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        given = [_flag(n, getattr(args, n)) for n in _RECIPE_FLAGS if getattr(args, n, None) is not None]   # 0 and --no-x too
        if given:
            raise VdeblurError(f"--resume continues the saved recipe; drop {', '.join(given)}")
        _, state = load_run_state(run_dir)
        recipe = Recipe(**json.loads(state["recipe"]))   # checked whole by load_run_state
    else:
        if (run_dir / "latest.json").exists():
            raise VdeblurError(f"{run_dir} already holds a run; continue it with --resume or pick another --name/--out")
        recipe = recipe_from_args(args)
        if recipe.precision == "auto" and resolve_device(args.device).type == "cpu" and not cpu_bf16_kind():
            print("vdeblur train: this CPU has no native bf16; training in fp32", file=sys.stderr)
    trainer = train(recipe, run_dir, resume=args.resume, device=args.device,
                    checkpoint_minutes=args.checkpoint_minutes, time_limit_minutes=args.time_limit,
                    workers=args.workers, progress=not args.no_progress, log_every=args.log_every,
                    compile=args.compile)
    if trainer.step < recipe.steps:
        print(f"vdeblur train: continue with: vdeblur train --resume --out {run_dir}", file=sys.stderr)
    if trainer.stopped_by is not None:   # checkpointed, but stopped as asked: 128 + N, as every command exits
        return 128 + trainer.stopped_by
    return 0
