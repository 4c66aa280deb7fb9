"""Errors raised by the data modules, meant to be read by a user before training starts."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are missing; the message lists every place searched and how to get the data."""


class DatasetFormatError(ValueError):
    """A dataset file exists but cannot be used; the message names the file and what is wrong."""
