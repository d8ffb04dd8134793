"""Every profile section, complete: the entry layer imports each section's owner, then declares the list.

A section's dataclass registers itself where it is defined (``@section("irl")``,
:func:`fairl_lib.config.section`); this module imports those modules, so that the registry is complete
before any config is built, and declares the sections in profile order (the order of
``Config.sections`` and of the error messages). :mod:`fairl_lib.notebook` imports it, and with it the
package itself (``import fairl_lib``), the pipeline and the CLI; a script that builds a config from
:mod:`fairl_lib.config` alone gets it through the package's ``__init__``.

Two classes are registered here rather than where they are defined, with the same decorator:
``llm.rlhf.RLHFConfig`` and ``stages.audit.AuditConfig``.
"""
from __future__ import annotations

from fairl_lib import config
from fairl_lib.analysis import stats  # noqa: F401 ([ledger])
from fairl_lib.irl import config as irl_config  # noqa: F401 ([irl])
from fairl_lib.irl import theory  # noqa: F401 ([theory])
from fairl_lib.llm import models  # noqa: F401 ([gen])
from fairl_lib.llm.rlhf import RLHFConfig
from fairl_lib.stages import pair_audit, penalty_sweep, rerlhf, sizes, tuning  # noqa: F401
from fairl_lib.stages.audit import AuditConfig

config.section("rlhf")(RLHFConfig)
config.section("audit")(AuditConfig)

# profile order: the order of Config.sections and of the "Valid sections" in error messages
ORDER = ("data", "models", "gen", "rlhf", "pairs", "irl", "pairmix", "theory", "sizes", "rerlhf",
         "penalty_sweep", "audit", "pair_audit", "tuning", "ledger")
config.declare_sections(ORDER)
