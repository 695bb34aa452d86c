"""tfgal's error hierarchy.

Each error is also a built-in type (ValueError, RuntimeError, ...) so callers that do
not know tfgal still catch it, and each carries the offending location (file, key,
index) so a user can find the bad input.
"""


__all__ = ["TfgalError", "DataError", "ManifestError", "ConfigError", "ModelContractError",
           "OutputExists", "OutputBusy"]


class TfgalError(Exception):
    """Base class of every error tfgal raises on purpose."""


class DataError(TfgalError, ValueError):
    """Bad data: NaN pixels, wrong shapes, labels out of range, corrupt files.

    Attributes:
      path: the file (or directory) that holds the bad data, when known.
      index: the record index, array index or key of the bad item, when known.
    """

    def __init__(self, message, *, path=None, index=None):
        where = []
        if path is not None:
            where.append(f"file {path}")
        if index is not None:
            where.append(f"index {index}")
        full = f"{message} ({', '.join(where)})" if where else message
        super().__init__(full)
        self.path = None if path is None else str(path)
        self.index = index


class ManifestError(DataError):
    """A dataset manifest that is missing, unreadable or of another schema version."""


class ConfigError(TfgalError, ValueError):
    """An unknown config key or a bad value.

    Attributes:
      key: the offending key.
      valid: the keys (or values) that would have been accepted.
    """

    def __init__(self, message, *, key=None, valid=None):
        if valid:
            message = f"{message}; valid: {', '.join(map(str, valid))}"
        super().__init__(message)
        self.key = key
        self.valid = tuple(valid) if valid else ()


class ModelContractError(TfgalError, ValueError):
    """A model (SavedModel or Keras) that lacks the signature or shapes tfgal needs."""


class OutputExists(TfgalError, FileExistsError):
    """An output that already exists, refused because replacing it was not asked for.

    Attributes:
      path: the output (file or directory), as given.
    """

    def __init__(self, message, *, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class OutputBusy(TfgalError, RuntimeError):
    """An output another live process is writing (`tfgal.locks.hold`).

    Attributes:
      path: the output, as given.
      holder: the holder's info (pid, host, command, since), or None when unreadable.
    """

    def __init__(self, message, *, path=None, holder=None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.holder = holder
