"""Dual-path reward model on frozen embeddings (Sec. 4.1) and its storage.

    R(o) = R_D(o) + R_F(o)

with a base path R_D trained on all pairs and a failure path R_F trained on the failure set
(Sec. 4.1). Each path is either

- ``head="linear"``: R(o) = theta^T h(o) + b (the equation of Sec. 4.1), or
- ``head="mlp"``:    R(o) = w2^T relu(W1^T h(o) + b1) + b2, the "two-layer MLP" of the
  implementation details (Sec. 5); the hidden size is not given in the paper and is configurable.

The failure path may have a head of its own (``IRLConfig.fail_head``: Sec. 4.1 writes R_F as
theta_F^T h(o) + b_F, Sec. 5 a two-layer MLP reward); a path's parameter names tell its head, so a
saved reward carries both. The failure head sees the same frozen embedding h(o) as the base head
(the paper writes theta_F^T h(o)). Parameters use the torch ``nn.Linear`` default (Kaiming-uniform with a = sqrt(5),
i.e. weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn from a generator seeded by
the run seed and the path, so a run is reproducible and the batched ensemble and a single run start
from the same values.

Parameter layout of one path (a dict of tensors, as saved): linear ``w (d,)``, ``b ()``; mlp
``w1 (d, H)``, ``b1 (H,)``, ``w2 (H,)``, ``b2 ()``; :func:`path_forward` evaluates it.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import Tensor

from fairl_lib.artifacts import atomic_write_bytes, to_jsonable, write_json

HEADS = ("linear", "mlp")
PATH_ROLES = {"base": 0, "failure": 1}
WEIGHT_FILE = "reward.safetensors"
META_FILE = "reward.json"


def check_head(head: str) -> None:
    """Raise a ValueError naming the valid heads."""
    if head not in HEADS:
        raise ValueError(f"Unknown reward head {head!r}; valid: {', '.join(HEADS)}")


def path_generator(seed: int, role: str) -> torch.Generator:
    """A torch generator for one path's init, derived from (run seed, path role)."""
    state = np.random.SeedSequence([int(seed), 1000 + PATH_ROLES[role]]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _uniform(shape: tuple[int, ...], bound: float, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2.0 - 1.0).mul(bound).to(dtype)


def init_path(dim: int, head: str, hidden: int, gen: torch.Generator,
              dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Kaiming-uniform init of one path, as ``nn.Linear`` does (bounds 1/sqrt(fan_in)), Sec. 4.1."""
    check_head(head)
    if head == "linear":
        bound = 1.0 / math.sqrt(dim)
        return {"w": _uniform((dim,), bound, gen, dtype), "b": _uniform((), bound, gen, dtype)}
    b1, b2 = 1.0 / math.sqrt(dim), 1.0 / math.sqrt(hidden)
    w1 = _uniform((hidden, dim), b1, gen, dtype).T.contiguous()  # drawn as nn.Linear's (out, in)
    return {"w1": w1, "b1": _uniform((hidden,), b1, gen, dtype),
            "w2": _uniform((hidden,), b2, gen, dtype), "b2": _uniform((), b2, gen, dtype)}


def weight_names(head: str) -> tuple[str, ...]:
    """The weight matrices of a path (what ||w_F||^2 of Eq. 3 sums over; biases excluded)."""
    return ("w",) if head == "linear" else ("w1", "w2")


def path_forward(params: Mapping[str, Tensor], h: Tensor) -> Tensor:
    """R(o) of one path (Sec. 4.1: theta^T h(o) + b, or the two-layer MLP) for ``h (..., d)`` -> ``(...)``."""
    if "w" in params:
        return h @ params["w"] + params["b"]
    z = torch.relu(h @ params["w1"] + params["b1"])
    return z @ params["w2"] + params["b2"]


class RewardModel:
    """A trained reward R(o) = R_D(o) [+ R_F(o)]: call it on an embeddings array to get rewards.

    ``failure`` is None for the baselines (mm_irl, me_irl: base path only). ``meta`` carries the
    method, seed, config and anything else worth saving (JSON-serialisable).
    """

    def __init__(self, base: Mapping[str, Tensor], failure: Mapping[str, Tensor] | None = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        self.base = {k: v.detach().clone() for k, v in base.items()}
        self.failure = None if failure is None else {k: v.detach().clone() for k, v in failure.items()}
        self.meta = dict(meta or {})

    @property
    def head(self) -> str:
        return "linear" if "w" in self.base else "mlp"

    @property
    def dim(self) -> int:
        return int(self.base["w" if self.head == "linear" else "w1"].shape[0])

    @property
    def hidden(self) -> int:
        return 0 if self.head == "linear" else int(self.base["w1"].shape[1])

    @property
    def fail_head(self) -> str | None:
        """The failure path's head (``IRLConfig.fail_head``), None for a base-only model."""
        if self.failure is None:
            return None
        return "linear" if "w" in self.failure else "mlp"

    @property
    def fail_hidden(self) -> int:
        """Hidden width of an MLP failure path (0 for a linear one or none)."""
        return int(self.failure["w1"].shape[1]) if self.fail_head == "mlp" else 0

    def _as_tensor(self, embeddings: np.ndarray | Tensor) -> Tensor:
        h = torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, Tensor) else embeddings)
        if h.dim() != 2 or h.shape[1] != self.dim:
            raise ValueError(f"Expected embeddings of shape (n, {self.dim}); got {tuple(h.shape)}")
        return h.to(self.base["b" if self.head == "linear" else "b2"].dtype)

    @torch.no_grad()
    def components(self, embeddings: np.ndarray | Tensor,
                   chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """(R_D(o), R_F(o)) as numpy arrays; R_F is zeros for a base-only model."""
        h = self._as_tensor(embeddings)
        r_d, r_f = [], []
        for s in range(0, h.shape[0], chunk):
            hc = h[s:s + chunk]
            rd = path_forward(self.base, hc)
            r_d.append(rd)
            r_f.append(path_forward(self.failure, hc) if self.failure is not None else torch.zeros_like(rd))
        if not r_d:
            return np.zeros(0), np.zeros(0)
        return torch.cat(r_d).numpy(), torch.cat(r_f).numpy()

    def __call__(self, embeddings: np.ndarray | Tensor) -> np.ndarray:
        """R(o) = R_D(o) + R_F(o) for ``embeddings (n, d)`` -> numpy ``(n,)``."""
        r_d, r_f = self.components(embeddings)
        return r_d + r_f

    def tensors(self) -> dict[str, Tensor]:
        """Flat name -> tensor map (``base.w1``, ``failure.b2``, ...) for safetensors."""
        out = {f"base.{k}": v.contiguous() for k, v in self.base.items()}
        if self.failure is not None:
            out.update({f"failure.{k}": v.contiguous() for k, v in self.failure.items()})
        return out

    def __repr__(self) -> str:
        kind = "dual-path" if self.failure is not None else "base-only"
        fail = f", fail_head={self.fail_head}" if self.failure is not None and self.fail_head != self.head else ""
        return (f"RewardModel({kind}, head={self.head}{fail}, dim={self.dim}, hidden={self.hidden}, "
                f"method={self.meta.get('method')}, seed={self.meta.get('seed')})")


def reward_folder(results_dir: str | os.PathLike, method: str, seed: int) -> Path:
    """``<results_dir>/rewards/<method>/seed<k>/``: where a trained reward of a profile is saved."""
    return Path(results_dir) / "rewards" / method / f"seed{int(seed)}"


def save_reward(folder: str | os.PathLike, model: RewardModel, config: Any = None,
                extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``reward.safetensors`` + ``reward.json`` (config, meta, extra) into ``folder``, atomically.

    Each file is written to a temporary name in the same folder and moved into place with
    ``os.replace``; the weights go first, so a present ``reward.json`` means a complete save.
    ``config`` is a dataclass (e.g. ``IRLConfig``) or a dict; default: the one in ``model.meta``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = model.meta.get("config")
    cfg = asdict(config) if is_dataclass(config) else (dict(config) if config is not None else None)
    meta = {"format": 1, "head": model.head, "dim": model.dim, "hidden": model.hidden,
            "has_failure_path": model.failure is not None, "fail_head": model.fail_head,
            "fail_hidden": model.fail_hidden, "meta": to_jsonable(model.meta),
            "config": to_jsonable(cfg), "extra": to_jsonable(dict(extra or {}))}
    tensors = model.tensors()
    atomic_write_bytes(folder / WEIGHT_FILE, save(tensors))
    write_json(folder / META_FILE, meta)
    return folder


def load_reward(folder: str | os.PathLike) -> RewardModel:
    """Read a reward written by :func:`save_reward`; ``model.meta`` gains ``config`` and ``extra``."""
    folder = Path(folder)
    if not (folder / META_FILE).exists() or not (folder / WEIGHT_FILE).exists():
        raise FileNotFoundError(f"No saved reward in {folder} (expected {WEIGHT_FILE} and {META_FILE}); "
                                "train it first (train_grid / train_one, then save_reward).")
    meta = json.loads((folder / META_FILE).read_text())
    tensors = load_file(str(folder / WEIGHT_FILE))
    base = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("base.")}
    fail = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("failure.")} or None
    info = dict(meta.get("meta", {}))
    info["config"] = meta.get("config")
    info["extra"] = meta.get("extra", {})
    model = RewardModel(base, fail, info)
    for key in ("head", "fail_head"):  # older files have no fail_head: the tensors' names tell
        if key in meta and meta[key] != getattr(model, key):
            raise ValueError(f"{folder / META_FILE} says {key}={meta[key]!r} but {WEIGHT_FILE} holds a "
                             f"{getattr(model, key)!r} path; the two files do not belong together.")
    return model
