"""ECL: Effective Collaborative Learning for long-tailed recognition (Lightning + Hydra)."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `${ecl.cwd:}` in conf/paths: the start directory, usable before Hydra's own `${hydra:runtime.cwd}` exists (a
# multirun resolves its sweep dir before any job starts).
OmegaConf.register_new_resolver("ecl.cwd", os.getcwd, replace=True)
