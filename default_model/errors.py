"""The error of the default-model build, in its own module so that every step can raise it."""


class DefaultModelError(RuntimeError):
    """The default model could not be built (download, checksum or training failure)."""
