"""From trained rewards and recorded runs to the paper's tables, figures and claims.

- :mod:`~fairl_lib.analysis.pairset`: the preference-pair artifact and its conversion to the IRL data.
- :mod:`~fairl_lib.analysis.metrics`: F1 / AUC with a train-chosen threshold, STARC (Eq. 4, Eq. 10).
- :mod:`~fairl_lib.analysis.evaluate`: Tables 1-3, Figure 3 (left), failure slices, seed dispersion, pair types,
  the Jigsaw learning curve.
- :mod:`~fairl_lib.analysis.failure_path`: how much the failure path R_F acts (learned flip share).
- :mod:`~fairl_lib.analysis.audit`: explanation sets (convex hulls of training rollouts, notebook 10).
- :mod:`~fairl_lib.analysis.explain_data`: explanation sets on anyone's data: training and responses files,
  their feature vectors (pairs as feature differences), one report per response (``audit explain``).
- :mod:`~fairl_lib.analysis.site`: the executed notebooks, report and figures as a static site.
- :mod:`~fairl_lib.analysis.theory_page`: notebook 03's feasible set with sliders on the site (precomputed frames).
- :mod:`~fairl_lib.analysis.provenance`: which commit made the committed results, and which inputs changed since.
- :mod:`~fairl_lib.analysis.paper`: the paper's own numbers.
- :mod:`~fairl_lib.analysis.schema`: the one schema of every notebook's metrics file.
- :mod:`~fairl_lib.analysis.report`: the claims ledger (notebook 09), reading only the schema's keys.

Reads :mod:`fairl_lib.irl` and :mod:`fairl_lib.llm`; never :mod:`fairl_lib.stages`.
"""
