"""fairl_lib: the library behind the FA-IRL companion notebooks.

Notebooks start with::

    from fairl_lib import setup_notebook, save_fig, save_table, write_metrics
    cfg = setup_notebook("03_theory_toy", PROFILE, SEED, FORCE, OVERRIDES)
"""
from fairl_lib.config import Config, make_config
from fairl_lib.notebook import is_batch_run, setup_notebook, write_metrics
from fairl_lib.plots import save_fig
from fairl_lib.tables import save_table

__all__ = ["Config", "make_config", "setup_notebook", "is_batch_run", "save_fig", "save_table", "write_metrics"]
__version__ = "0.1.0"
