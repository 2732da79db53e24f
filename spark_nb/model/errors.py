"""The one error a model folder can raise: it says what is wrong and what to do."""


class ModelLoadError(ValueError):
    """A model folder cannot be loaded (missing file, unsupported architecture, bad shape, bad values)."""
