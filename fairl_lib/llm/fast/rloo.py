"""The fast RLOO step: trl's ``RLOOTrainer`` with the speed-ups of this package, and its settings.

:mod:`fairl_lib.llm.rlhf` trains with trl's own ``RLOOTrainer`` unless the run's settings ask for
something trl does not do; then it trains with :func:`fast_rloo_trainer_class`, a subclass that wraps
two of trl's methods and changes none of the objective (``E[r] - beta * KL(pi || pi_0)``, trl's RLOO
loss):

- ``_get_per_token_logps_and_entropies`` (private in trl): every log-prob pass runs inside the frozen
  trunk's ``active()`` block (:class:`fairl_lib.llm.fast.trunk.FrozenTrunk`, ``share_frozen_trunk``),
  takes the trunk from the rollouts' decoding (``trunk_from_rollouts``), and the policy's old-log-prob
  pass keeps its graph for the loss of the same step (``reuse_old_pass``);
- ``train``: runs under the run's autocast (:mod:`fairl_lib.llm.fast.precision`) and swaps the
  policy's ``generate`` for the rollouts: the inverse-CDF sampler's processors
  (:mod:`fairl_lib.llm.fast.sampling`; trl's generation config becomes greedy decoding over them), one
  prefill per distinct prompt (:mod:`fairl_lib.llm.fast.prefix`) and bf16 weight copies while decoding.

Both rely on how trl calls them (the private method's arguments, ``model.generate(**inputs,
generation_config=...)`` under ``torch.no_grad``), so the class is pinned to the trl versions it was
tested against (:data:`SUPPORTED_TRL`); another trl stops with a one-line error saying what to do.
``tests/test_fast_rloo.py`` checks that the step equals trl's own, step for step, in fp32.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fairl_lib.llm.fast.precision import autocast, bf16_weights
from fairl_lib.llm.fast.prefix import generate_shared_prefix
from fairl_lib.llm.fast.sampling import generate_overrides
from fairl_lib.llm.fast.trunk import FrozenTrunk, row_keys

if TYPE_CHECKING:
    from fairl_lib.llm.rlhf import RLHFConfig

# trl versions whose RLOOTrainer this subclass was read against and tested equal to (tests/test_fast_rloo.py)
SUPPORTED_TRL = ("1.12.0",)


@dataclass(frozen=True)
class FastRLOOSettings:
    """The fast RLOO step's own switches (``RLHFConfig.fast``; no profile sets them, all on by default).

    Each gives the same computation as trl's step up to float rounding, with less work; with all three
    off (and ``[rlhf]`` ``sampler = "multinomial"``, ``share_prefix = false``, ``precision = "fp32"``)
    :mod:`fairl_lib.llm.rlhf` trains with trl's own ``RLOOTrainer``. They are set from Python
    (``dataclasses.replace(cfg.rlhf, fast=FastRLOOSettings(...))``, as the tests and
    ``benchmarks/rlhf_step.py`` do), not from a profile. Stage keys list them beside the ``[rlhf]``
    fields (``rlhf.settings_dict``).

    Attributes:
        share_frozen_trunk: with ``trainable_top_blocks`` > 0, run the frozen lower blocks once per batch
            for the old, reference and training passes (:class:`fairl_lib.llm.fast.trunk.FrozenTrunk`;
            fewer FLOPs).
        reuse_old_pass: the policy's forward pass that gives the old log-probs (trl's
            ``old_per_token_logps``, for the KL penalty) keeps its autograd graph, and the loss of the same
            step uses it instead of running the policy again. With one optimisation pass per batch of
            rollouts (trl's ``num_iterations = 1``, one gradient step per generation) the weights are the
            same in both passes, so this is the same computation with one forward fewer per step; the
            importance ratio is then exactly 1 (it was 1 up to float rounding).
        trunk_from_rollouts: with the shared frozen trunk, the rollouts' decoding keeps the last frozen
            block's output at every position, and the first log-prob pass over the rollouts takes the
            trunk from there instead of running the frozen blocks again
            (:meth:`fairl_lib.llm.fast.trunk.FrozenTrunk.from_rollouts`; the same activations computed one
            token at a time).
    """

    share_frozen_trunk: bool = True
    reuse_old_pass: bool = True
    trunk_from_rollouts: bool = True

    @classmethod
    def off(cls) -> FastRLOOSettings:
        """All three switches off."""
        return cls(share_frozen_trunk=False, reuse_old_pass=False, trunk_from_rollouts=False)

    def any_on(self) -> bool:
        return self.share_frozen_trunk or self.reuse_old_pass or self.trunk_from_rollouts


def check_trl_version(version: str | None = None) -> None:
    """Raise a one-line error unless trl (``version``, default the installed one) is in :data:`SUPPORTED_TRL`."""
    if version is None:
        import trl

        version = trl.__version__
    if version not in SUPPORTED_TRL:
        raise RuntimeError(
            f"the fast RLOO step (fairl_lib.llm.fast.rloo) overrides private methods of trl "
            f"{' / '.join(SUPPORTED_TRL)} but trl {version} is installed: install trl=={SUPPORTED_TRL[-1]}, or "
            "train with trl's own step (RLHFConfig.fast = FastRLOOSettings.off(), and [rlhf] "
            'sampler = "multinomial", share_prefix = false, precision = "fp32")'
        )


def same_rows(old: Sequence[str], new: Sequence[str]) -> Any:
    """Indices ``order`` with ``old[order[j]] == new[j]`` for every row ``j`` (a torch tensor), or None
    when ``new`` is not a reordering of ``old`` (trl shuffles the rows between its passes)."""
    import torch

    if len(old) != len(new):
        return None
    where: dict[str, list[int]] = {}
    for i, key in enumerate(old):
        where.setdefault(key, []).append(i)
    order = []
    for key in new:
        if not where.get(key):
            return None
        order.append(where[key].pop())
    return torch.tensor(order, dtype=torch.long)


def fast_rloo_trainer_class() -> type:
    """trl's ``RLOOTrainer`` with the speed-ups (see the module docstring); construct it as
    ``FastRLOOTrainer(rlhf_config, **trl_kwargs)``. Checks the installed trl first
    (:func:`check_trl_version`)."""
    check_trl_version()
    return _fast_rloo_trainer_class()


@functools.cache
def _fast_rloo_trainer_class() -> type:
    from transformers import GenerationConfig
    from trl import RLOOTrainer

    class FastRLOOTrainer(RLOOTrainer):
        """trl's RLOO step with the frozen trunk, the reused old pass and the fast rollouts."""

        def __init__(self, cfg: RLHFConfig, **kwargs: Any):
            policy = kwargs["model"]
            super().__init__(**kwargs)
            fast: FastRLOOSettings = cfg.fast
            self._trunk = None
            n_blocks = len(policy.model.layers) if hasattr(policy, "model") and hasattr(policy.model, "layers") else 0
            n_frozen = n_blocks - cfg.trainable_top_blocks
            if fast.share_frozen_trunk and cfg.trainable_top_blocks >= 0 and n_blocks and n_frozen > 0:
                self._trunk = FrozenTrunk(n_frozen)
                self._trunk.attach(policy, [self.ref_model] if self.ref_model is not None else [])
            self._sampler, self._share_prefix, self._precision = None, cfg.share_prefix, cfg.precision
            self._from_rollouts = fast.trunk_from_rollouts and self._trunk is not None
            # the old pass's graph serves the loss only when the loss comes right after it, at the same weights
            self._reuse_old = (fast.reuse_old_pass and self.num_iterations == 1
                               and self.args.steps_per_generation == 1)
            self._old_pass: tuple | None = None
            self.old_pass_reused = 0
            if cfg.sampler == "inverse_cdf" and not getattr(self, "use_vllm", False):
                # rollouts drawn by fairl_lib.llm.fast.sampling: greedy decoding over its processors
                over = generate_overrides(cfg.temperature, cfg.top_k, cfg.top_p)
                self._sampler = over.pop("logits_processor")
                self.generation_kwargs.update(over)
                self.generation_config = GenerationConfig(**self.generation_kwargs, disable_compile=True)

        def train(self, *args: Any, **kwargs: Any):
            with autocast(self._precision):
                return self._train(*args, **kwargs)

        def _train(self, *args: Any, **kwargs: Any):
            # trl calls model.generate(**inputs, generation_config=...): wrap that method (our sampler,
            # the shared prompt prefix, and bf16 weight copies for the rollouts' decoding: the policy
            # cannot change while it writes them, so its weights are cast once per batch of rollouts,
            # not at every token; precision.bf16_weights)
            policy = self.model
            plain = policy.generate
            extra = {"logits_processor": self._sampler} if self._sampler is not None else {}
            if self._share_prefix:
                run = functools.partial(generate_shared_prefix, policy, generate=plain, **extra)
            else:
                run = functools.partial(plain, **extra)

            def rollouts(*a: Any, **k: Any):
                import torch

                # trl's rollouts run under no_grad; evaluation's generate under inference_mode, whose
                # tensors could not feed a training pass, so only the rollouts leave their trunk behind
                keep = self._from_rollouts and "input_ids" in k and not torch.is_inference_mode_enabled()
                with bf16_weights(policy, self._precision):
                    if not keep:
                        return run(*a, **k)
                    with self._trunk.capturing() as steps:
                        seqs = run(*a, **k)
                self._trunk.keep_rollouts(k["input_ids"], k.get("attention_mask", torch.ones_like(k["input_ids"])),
                                          seqs, steps, getattr(self.processing_class, "eos_token_id", None))
                return seqs

            policy.generate = rollouts
            try:
                return super().train(*args, **kwargs)
            finally:
                del policy.generate

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               *args: Any, **kwargs: Any):
            import torch

            if not (self._reuse_old and model is self.model):
                return self._logps(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
            if not torch.is_grad_enabled():  # trl's old-policy pass (inside torch.no_grad)
                with torch.enable_grad():
                    logps, ent, aux = self._logps(model, input_ids, attention_mask, logits_to_keep, *args,
                                                  **{**kwargs, "compute_entropy": True})
                self._old_pass = (row_keys(input_ids, attention_mask), logits_to_keep, logps, ent, aux)
                return (logps.detach(), ent if kwargs.get("compute_entropy") else None,
                        None if aux is None else aux.detach())
            old, self._old_pass = self._old_pass, None
            order = same_rows(old[0], row_keys(input_ids, attention_mask)) if old is not None else None
            if order is None or old[1] != logits_to_keep:
                return self._logps(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
            self.old_pass_reused += 1
            return old[2][order], old[3][order], old[4]

        def _logps(self, model, input_ids, attention_mask, logits_to_keep, *args: Any, **kwargs: Any):
            if self._trunk is None:
                return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                  *args, **kwargs)
            # the prompt columns: the trunk runs each prompt once for its generations_per_prompt rows
            self._trunk.prefix_width = input_ids.shape[1] - logits_to_keep if self._share_prefix else 0
            # the rollouts' own trunk, when these rows are the ones just decoded
            self._trunk.completion_width = logits_to_keep if self._from_rollouts else 0
            try:
                with self._trunk.active():
                    return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask,
                                                                      logits_to_keep, *args, **kwargs)
            finally:
                self._trunk.prefix_width = self._trunk.completion_width = 0

        def speedup_info(self) -> dict[str, Any]:
            trunk = self._trunk
            return {"frozen_trunk_layers": trunk.n_frozen if trunk else 0,
                    "frozen_trunk_models": trunk.n_models if trunk else 0,
                    "trunk_hits": trunk.hits if trunk else 0, "trunk_misses": trunk.misses if trunk else 0,
                    "trunk_prefix_hits": trunk.prefix_hits if trunk else 0,
                    "trunk_rollout_hits": trunk.rollout_hits if trunk else 0,
                    "old_pass_reused": self.old_pass_reused}

    return FastRLOOTrainer
