"""A shared frozen trunk for RLHF: run the frozen lower blocks once per batch, not three times.

When RLHF trains only the top blocks (``[rlhf] trainable_top_blocks``), the frozen lower blocks of
the policy and of the reference model pi_0 hold the same weights, and an RLOO step runs them three
times on the same tokens: the old log-probs, the reference log-probs (both in trl's
``_generate_and_score_completions``) and the training forward (``compute_loss``).
:class:`FrozenTrunk` runs them once and hands the last frozen block's output to the other passes.
The old and reference log-probs are bit-identical; the training pass is equal to float rounding
(trl shuffles its rows, and a GEMM's rounding depends on row order) (tested, with the gradients
and a whole RLOO run). How much time it saves: ``benchmarks/rlhf_step.py``, results in
``benchmarks/README.md``.

Within the pass that computes the trunk, the rows' shared prompt can run once too: an RLOO batch
holds each prompt ``generations_per_prompt`` times, left padded to one width, so the trunk runs the
distinct prompts once into a key/value cache and each row's completion on top of it
(:meth:`FrozenTrunk.shared_prefix`, what :mod:`fairl_lib.llm.fast.prefix` does for generation); the
completion's activations are the same up to float rounding.

The rollouts themselves already ran the trunk: decoding a completion computes the last frozen
block's output at every prompt and completion position the log-prob passes need. With
:meth:`FrozenTrunk.capturing` around the rollouts' ``generate`` and :meth:`FrozenTrunk.keep_rollouts`
after it, the first log-prob pass over those rows takes the trunk from the rollouts
(:meth:`FrozenTrunk.from_rollouts`) instead of running the frozen blocks again. Decoding computed the
same activations one token at a time (other GEMM shapes), so they agree to float rounding; rows the
rollouts did not write (or an unexpected call pattern) take the computed trunk.

Evaluation uses the same trunk: ``models.completion_nll_models`` scores completions under base, expert
and unlearned expert, which share their lower blocks (:func:`shared_lower_layers`), and
:meth:`FrozenTrunk.detach` puts the models back afterwards.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def row_keys(ids: torch.Tensor, mask: torch.Tensor | None) -> list[str]:
    """One content key per row (its token ids, attention mask and width): rows may come reordered."""
    import torch

    ids = ids.detach().to("cpu", torch.int64)
    mask = torch.ones_like(ids) if mask is None else mask.detach().to("cpu", torch.int64)
    both = torch.cat([ids, mask], dim=1).numpy()
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in both]


class _TrunkLayer:
    """Forward of one frozen decoder layer that can be skipped (trunk hit) or recorded (last layer)."""

    def __init__(self, trunk: FrozenTrunk, layer: Any, last: bool):
        self.trunk, self.layer, self.last = trunk, layer, last

    def __call__(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        trunk = self.trunk
        if trunk.current is None:
            out = self.layer._fairl_forward(hidden_states, *args, **kwargs)
            if self.last and trunk.capture is not None:  # rollouts being decoded: keep the trunk's output
                trunk.capture.append(out.detach())
            return out
        if trunk.hit:
            return trunk.recall() if self.last else hidden_states
        out = self.layer._fairl_forward(hidden_states, *args, **kwargs)
        if self.last:
            trunk.remember(out.detach())
        return out


class FrozenTrunk:
    """Share the frozen lower ``n_frozen`` decoder layers between models with identical weights there.

    Attach it to the policy and the reference model; inside ``with trunk.active():`` a forward
    pass whose ``input_ids``/``attention_mask`` were seen before skips those layers and resumes
    from the stored hidden state (kept per row, keyed by the row's tokens and mask, so a batch
    whose rows come back shuffled, as trl's training pass does, still hits). Outside ``active()`` (generation,
    evaluation) nothing changes. Only for full-sequence passes without a KV cache.
    """

    def __init__(self, n_frozen: int, capacity: int = 512):
        if n_frozen < 1:
            raise ValueError("FrozenTrunk needs at least one frozen layer.")
        self.n_frozen, self.capacity = n_frozen, capacity  # capacity: rows kept
        self.store: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.current: list[str] | None = None
        self.hit = False
        self._on = False
        self.hits = self.misses = 0
        self.n_models = 0
        self._handles: list[Any] = []
        self._models: list[Any] = []
        self.prefix_width = 0  # columns shared by repeated rows in the next pass (0: none; shared_prefix)
        self.prefix_hits = 0
        self.completion_width = 0  # completion columns of the next pass (0: do not look in the rollouts)
        self.capture: list[torch.Tensor] | None = None  # the last frozen layer's outputs while decoding
        self.rollouts: dict[bytes, tuple[torch.Tensor, int, int]] = {}  # from keep_rollouts
        self.rollout_hits = 0

    def attach(self, model: PreTrainedModel, others: Sequence[PreTrainedModel] = (), require_frozen: bool = True) -> None:
        """Wrap the lower layers of ``model`` and of each of ``others`` whose lower layers equal its.

        ``others`` with different lower-layer or input-embedding weights (or layer counts) are left
        alone (they run their own layers as before). ``n_models`` counts the models sharing the trunk.
        ``require_frozen``: refuse a ``model`` whose lower layers are trainable (a training run must
        not share activations that its gradients would change); inference-only callers pass False.
        """
        if require_frozen and any(p.requires_grad for p in model.model.layers[: self.n_frozen].parameters()):
            raise ValueError("FrozenTrunk: the lower layers must be frozen (requires_grad False).")
        models = [model] + [m for m in others if shared_lower_layers([model, m], self.n_frozen) == self.n_frozen]
        self.n_models = len(models)
        for m in models:
            for i, layer in enumerate(m.model.layers[: self.n_frozen]):
                if not hasattr(layer, "_fairl_forward"):
                    layer._fairl_forward = layer.forward
                layer.forward = _TrunkLayer(self, layer, last=i == self.n_frozen - 1)
            self._handles.append(m.model.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self._models.append(m)

    def detach(self) -> None:
        """Undo :meth:`attach`: every wrapped model runs its own layers again and the store is emptied."""
        for h in self._handles:
            h.remove()
        for m in self._models:
            for layer in m.model.layers[: self.n_frozen]:
                if isinstance(layer.forward, _TrunkLayer) and layer.forward.trunk is self:
                    layer.forward = layer._fairl_forward
        self._handles, self._models = [], []
        self.store.clear()

    def _pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        usable = self._on and ids is not None and kwargs.get("past_key_values") is None
        self.current = row_keys(ids, mask) if usable else None
        self.hit = self.current is not None and all(k in self.store for k in self.current)
        if self.current is not None:
            self.hits += self.hit
            self.misses += not self.hit
        if self.current is not None and not self.hit and self.completion_width and self.rollouts and mask is not None:
            hidden = self.from_rollouts(ids, mask, ids.shape[1] - self.completion_width)
            if hidden is not None:  # the rollouts' decoding already ran the trunk over these rows
                self.remember(hidden)
                self.hit = True
                self.rollout_hits += 1
        if (self.current is not None and not self.hit and self.prefix_width and mask is not None
                and kwargs.get("position_ids") is None):  # shared_prefix numbers positions as such a pass does
            hidden = self.shared_prefix(module, ids, mask, self.prefix_width)
            if hidden is not None:  # stored like a computed trunk: the layers below now pass through
                self.remember(hidden)
                self.hit = True
                self.prefix_hits += 1

    def shared_prefix(self, decoder: Any, ids: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor | None:
        """The trunk's output for ``ids`` (what the lower ``n_frozen`` layers of ``decoder`` compute on
        the whole rows), with the first ``width`` columns run once per run of adjacent equal rows.

        The distinct prefixes go through the lower layers into a ``DynamicCache`` (positions
        ``0..width-1``, as a pass without ``position_ids`` numbers them; trl's log-prob passes are such
        passes), the cache is copied to every row, and the rows' remaining columns run on top of it.
        Returns None (nothing saved) when no rows repeat.
        """
        import torch

        from fairl_lib.llm.fast.prefix import distinct_rows, shared_cache

        first, groups = distinct_rows(ids[:, :width], mask[:, :width])
        if bool(first.all()) or not 0 < width < ids.shape[1] or not hasattr(decoder, "norm"):
            return None
        layers, norm, on, current = decoder.layers, decoder.norm, self._on, self.current
        decoder.layers = torch.nn.ModuleList(list(layers)[: self.n_frozen])
        decoder.norm = torch.nn.Identity()  # the trunk's output is the last frozen layer's, before the final norm
        self._on, self.current = False, None  # the calls below run the plain layers
        try:
            pos = torch.arange(ids.shape[1], device=ids.device)
            out, cache = shared_cache(decoder, ids[first, :width], mask[first, :width],
                                      pos[:width].expand(int(first.sum()), -1), groups)
            head = out.last_hidden_state
            tail = decoder(input_ids=ids[:, width:], attention_mask=mask, position_ids=pos[width:].expand(len(ids), -1),
                           past_key_values=cache, use_cache=True).last_hidden_state
        finally:
            decoder.layers, decoder.norm, self._on, self.current = layers, norm, on, current
        return torch.cat([head[groups.to(ids.device)], tail], 1).detach()

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[torch.Tensor]]:
        """Within this block every forward pass outside :meth:`active` (generation) appends the last
        frozen layer's output to the yielded list, for :meth:`keep_rollouts`."""
        self.capture = []
        try:
            yield self.capture
        finally:
            self.capture = None

    def keep_rollouts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sequences: torch.Tensor,
                      steps: Sequence[torch.Tensor], eos_token_id: int | None) -> int:
        """Keep the trunk's output over the rollouts ``generate`` just wrote; returns the rows kept.

        ``input_ids``/``attention_mask``: the left-padded prompts (width ``P``) given to ``generate``;
        ``sequences``: what it returned (``P + T`` columns); ``steps``: the outputs :meth:`capturing`
        collected, in call order: the prefill (``P`` columns, or ``P - 1`` over one row per run of equal
        prompts when the prompts ran once, :func:`fairl_lib.llm.fast.prefix.generate_shared_prefix`), then one
        column per decoding step. Together they cover columns ``0 .. P + T - 2`` (the last token is never
        fed back). Each row is kept under its prompt's real tokens and its completion up to and including
        the first ``eos_token_id`` (the tokens trl's log-prob passes leave unmasked). A call pattern
        that does not add up to those columns keeps nothing (the log-prob passes then compute the trunk).
        """
        import torch

        from fairl_lib.llm.fast.prefix import distinct_rows

        self.rollouts = {}
        n_rows, width = input_ids.shape
        new = sequences.shape[1] - width
        if not steps or new < 1 or any(s.ndim != 3 for s in steps):
            return 0
        first = steps[0]
        if first.shape[0] != n_rows:
            first = first[distinct_rows(input_ids, attention_mask)[1].to(first.device)]
        if any(s.shape[0] != n_rows for s in steps[1:]):
            return 0
        hidden = torch.cat([first, *steps[1:]], dim=1)
        if hidden.shape[1] != width + new - 1:
            return 0
        completions = sequences[:, width:]
        kept = completion_mask(completions, eos_token_id).bool()
        for i in range(n_rows):
            prompt = input_ids[i][attention_mask[i].bool()]
            self.rollouts[_rollout_key(prompt, completions[i][kept[i]])] = (hidden[i], width, len(prompt))
        return n_rows

    def from_rollouts(self, ids: torch.Tensor, mask: torch.Tensor, prompt_width: int) -> torch.Tensor | None:
        """The trunk's output for a log-prob pass over rollouts kept by :meth:`keep_rollouts`, or None
        when a row was not among them.

        ``ids``/``mask``: the pass's rows, ``prompt_width`` left-padded prompt columns, then the completion
        (unmasked up to its first end-of-sequence token). Each row's real prompt and completion columns
        get the decoded activations of the same tokens. The left padding and the last column (whose
        logits trl drops; decoding never fed that token back) are zero, and masked columns after the end
        of a completion hold what decoding computed there: no position whose log-prob counts attends to
        any of them.
        """
        import torch

        rows = []
        for i in range(len(ids)):
            real = mask[i].bool()
            key = _rollout_key(ids[i, :prompt_width][real[:prompt_width]], ids[i, prompt_width:][real[prompt_width:]])
            kept = self.rollouts.get(key)
            if kept is None:
                return None
            hidden, width, n_prompt = kept
            row = hidden.new_zeros(ids.shape[1], hidden.shape[-1])
            shift = prompt_width - width
            lo, hi = width - n_prompt, min(hidden.shape[0], width + ids.shape[1] - prompt_width)
            row[lo + shift : hi + shift] = hidden[lo:hi]
            rows.append(row)
        return torch.stack(rows)

    def recall(self) -> torch.Tensor:
        import torch

        for k in self.current:
            self.store.move_to_end(k)
        return torch.stack([self.store[k] for k in self.current])

    def remember(self, hidden: torch.Tensor) -> None:
        for k, row in zip(self.current, hidden):
            self.store[k] = row
        while len(self.store) > self.capacity:
            self.store.popitem(last=False)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._on = True
        try:
            yield
        finally:
            self._on, self.current, self.hit = False, None, False


def completion_mask(completions: torch.Tensor, eos_token_id: int | None) -> torch.Tensor:
    """trl's mask of generated completions: 1 up to and including each row's first ``eos_token_id``,
    0 after it (all 1 without one); ``(B, T)`` int64."""
    import torch

    if eos_token_id is None:
        return torch.ones_like(completions, dtype=torch.long)
    is_eos = (completions == eos_token_id).long()
    return ((is_eos.cumsum(1) - is_eos) == 0).long()


def _rollout_key(prompt: torch.Tensor, completion: torch.Tensor) -> bytes:
    import torch

    prompt, completion = prompt.to("cpu", torch.int64), completion.to("cpu", torch.int64)
    return torch.tensor([len(prompt)]).numpy().tobytes() + prompt.numpy().tobytes() + completion.numpy().tobytes()


def _same_weights(a: Any, b: Any) -> bool:
    import torch

    pa, pb = list(a.parameters()), list(b.parameters())
    return len(pa) == len(pb) and all(torch.equal(x, y) for x, y in zip(pa, pb))


def shared_lower_layers(models: Sequence[PreTrainedModel], limit: int | None = None) -> int:
    """How many lower decoder layers (and the input embedding) all ``models`` hold with equal weights
    (counting stops at ``limit``): 0 when they differ anywhere below the first layer, or when ``models``
    has fewer than two."""
    if len(models) < 2 or not all(hasattr(getattr(m, "model", None), "layers") for m in models):
        return 0
    first, rest = models[0], models[1:]
    if not all(_same_weights(first.get_input_embeddings(), m.get_input_embeddings()) for m in rest):
        return 0
    n = 0
    for i, layer in enumerate(first.model.layers[:limit]):
        if not all(i < len(m.model.layers) and _same_weights(layer, m.model.layers[i]) for m in rest):
            break
        n += 1
    return n
