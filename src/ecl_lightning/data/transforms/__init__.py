"""The augmentation recipes: per image on the CPU (`recipes.py`) and batched on the device (`gpu.py`)."""
