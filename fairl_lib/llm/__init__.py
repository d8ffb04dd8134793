"""The outside world: language models, scorers, data, and RLHF (never imports :mod:`fairl_lib.irl`).

- :mod:`~fairl_lib.llm.assets`: every model or data file enters here (hub id, PyPI wheel member or
  mirror folder, sha256), so offline, hub and mirror paths and their errors live in one place.
- :mod:`~fairl_lib.llm.data`: RealToxicityPrompts and Jigsaw.
- :mod:`~fairl_lib.llm.models`: causal LMs, generation, perplexity, the sentence embedder h(o).
- :mod:`~fairl_lib.llm.scorers`: toxicity classifiers (ground truth, judge, subtypes).
- :mod:`~fairl_lib.llm.rlhf`: trl's RLOO / PPO for any ``text -> reward`` callable (the expert and
  re-RLHF), maximising ``E[r] - beta * KL(pi || pi_0)``.
- :mod:`~fairl_lib.llm.fast`: the speed-ups, each tested against the plain computation: the frozen
  trunk, the shared prompt prefix, the inverse-CDF sampler, bf16 precision, worker processes, and the
  fast RLOO step (:mod:`~fairl_lib.llm.fast.rloo`) that :mod:`~fairl_lib.llm.rlhf` picks when the
  settings ask for a speed-up.
- :mod:`~fairl_lib.llm.progress`: progress lines (step k/N, rate, ETA) at least every 30 s for long steps.
- :mod:`~fairl_lib.llm.unlearn`: unlearning training rollouts from a policy (the audit, notebook 10).
"""
