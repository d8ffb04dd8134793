"""The cached steps the notebooks share, each keyed by its settings (:mod:`fairl_lib.cache`).

Data flows one way: expert (notebook 01) -> pairs (02) -> IRL grid and the equal-budget tuning of
every method (04) -> evaluation and its variants (05 Jigsaw set, subtype grids, learning curve,
penalty sweep; 06 pair mix; 07 model sizes; 08 re-RLHF) and the audit of the expert (10).
A notebook's ``FORCE`` recomputes only the stages it owns (:data:`fairl_lib.notebook.NOTEBOOK_STAGES`);
what a stage reads from upstream it reuses and never deletes.
"""
