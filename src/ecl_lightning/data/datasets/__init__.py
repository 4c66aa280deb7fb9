"""Readers of each on-disk format (IDX, CIFAR pickles, split files, class folders) and the torch Datasets."""
