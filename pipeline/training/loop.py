"""One resumable, deterministic optimisation loop, shared by the VQ-VAE and the priors.

Determinism: step `i` draws its batch and seeds torch's generator from (seed, name, i) alone, so a run
resumed from a checkpoint at step k computes steps k+1.. exactly as an undisturbed run would (same
weights on CPU, where kernels are deterministic). A checkpoint holds the weights, the optimiser state,
the module's non-parameter state (e.g. VQ-VAE codebook statistics) and the loss curve so far; it is
written to a temporary file and renamed, so a kill at any moment leaves the previous one intact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.files import atomic_path


@dataclass(frozen=True)
class Schedule:
    steps: int
    learning_rate: float
    warmup_steps: int = 0
    grad_clip: float = 1.0
    checkpoint_every: int = 25
    seed: int = 0

    def lr(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 10% of the peak."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def step_seed(seed: int, name: str, step: int) -> int:
    """The random stream of one step: a function of (seed, name, step) only."""
    key = [seed % 2**63, step] + list(name.encode())
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class Fitted:
    name: str
    steps: int
    resumed_from: int  # the step a checkpoint gave back (0: started fresh)
    curve: list[dict]  # one entry per step: {"step", "loss", "lr", ...metrics}


def fit(name: str, module, loss_fn: Callable[[int, np.random.Generator], tuple], schedule: Schedule,
        checkpoint: Path, *, extra_state: tuple[Callable[[], dict], Callable[[dict], None]] | None = None,
        parameters=None, quiet: bool = False) -> Fitted:
    """Run `schedule.steps` Adam steps of `loss_fn(step, rng) -> (loss tensor, {metric: float})` on `module`.

    Resumes from `checkpoint` when it exists (a finished one returns at once). `extra_state` saves and
    restores state that is not in the module's state_dict. `parameters` defaults to the module's
    trainable ones.
    """
    import torch

    params = [p for p in (parameters if parameters is not None else module.parameters()) if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=schedule.learning_rate, betas=(0.9, 0.95), eps=1e-8)
    start, curve = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        module.load_state_dict(state["module"])
        optimiser.load_state_dict(state["optimiser"])
        if extra_state is not None:
            extra_state[1](state["extra"])
        start, curve = state["step"], state["curve"]
    resumed_from = start

    def save(step: int) -> None:
        state = {"module": module.state_dict(), "optimiser": optimiser.state_dict(), "step": step, "curve": curve,
                 "extra": extra_state[0]() if extra_state is not None else {}}
        with atomic_path(checkpoint) as tmp:
            torch.save(state, tmp)

    module.train()
    bar = None
    if not quiet and os.environ.get("SYNTHAUDIO_QUIET") != "1" and start < schedule.steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=schedule.steps, initial=start, desc=f"train {name}", unit="step", leave=False,
                   mininterval=1.0)
    try:
        for step in range(start, schedule.steps):
            seed = step_seed(schedule.seed, name, step)
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            lr = schedule.lr(step)
            for group in optimiser.param_groups:
                group["lr"] = lr
            loss, metrics = loss_fn(step, rng)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training {name}: loss is {loss.item()} at step {step}; lower "
                                         "training.learning_rate or check the corpus audio")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, schedule.grad_clip)
            optimiser.step()
            curve.append({"step": step + 1, "loss": round(float(loss.detach()), 6), "lr": lr,
                          "grad_norm": round(float(grad_norm), 6), **{k: round(float(v), 6) for k, v in metrics.items()}})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}", refresh=False)
            if (step + 1) % schedule.checkpoint_every == 0 or step + 1 == schedule.steps:
                save(step + 1)
    finally:
        if bar is not None:
            bar.close()
        module.eval()
    return Fitted(name, schedule.steps, resumed_from, curve)
