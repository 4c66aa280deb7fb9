"""Hydra configs, shipped inside the package as ecl_lightning.conf."""
