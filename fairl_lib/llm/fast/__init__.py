"""The speed-ups of the language-model side: each gives what the plain computation gives (up to float
rounding, or the same law for samples) with less work, and each is tested against the plain one.

- :mod:`~fairl_lib.llm.fast.trunk`: the frozen lower blocks run once per batch for every log-prob
  pass (:class:`~fairl_lib.llm.fast.trunk.FrozenTrunk`; RLHF, evaluation, unlearning).
- :mod:`~fairl_lib.llm.fast.prefix`: one prefill per distinct prompt, its key/value cache shared by
  the rows that repeat it.
- :mod:`~fairl_lib.llm.fast.sampling`: the inverse-CDF token draw (one uniform per row instead of
  ``torch.multinomial``'s one exponential per vocabulary entry).
- :mod:`~fairl_lib.llm.fast.precision`: bf16 autocast where the CPU has native bf16.
- :mod:`~fairl_lib.llm.fast.parallel`: jobs in one-thread worker processes.
- :mod:`~fairl_lib.llm.fast.rloo`: the fast RLOO step (trl's ``RLOOTrainer`` with the above), its
  switches (:class:`~fairl_lib.llm.fast.rloo.FastRLOOSettings`) and the trl versions it is pinned to.

This ``__init__`` imports none of them, so importing one (``llm.models`` imports ``fast.precision``
and ``fast.prefix``) loads only that one.
"""
