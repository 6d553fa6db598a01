"""Errors a user can act on.

Every failure a user can fix is a `ReleaseError`: the task layer prints its message as one line and
exits with its code, never with a traceback. Anything else is a bug and keeps its traceback.
"""


class ReleaseError(Exception):
    """Base class: one line of text that says what went wrong and what to do."""

    exit_code = 1


class ConfigError(ReleaseError):
    """Bad flags, a bad release.toml or an unsupported arch/flavor/model."""

    exit_code = 2


class DownloadError(ReleaseError):
    """A file could not be fetched from any of its URLs (or the cache, offline)."""

    exit_code = 3


class ChecksumError(ReleaseError):
    """Bytes that do not match their pinned size or SHA256: never used, never shipped."""

    exit_code = 4


class BuildError(ReleaseError):
    """An external build tool (pip, PyInstaller, cc, mksquashfs, ...) failed."""

    exit_code = 5


class VerifyError(ReleaseError):
    """A built or downloaded artifact failed a check (smoke, functional, audit, clean system)."""

    exit_code = 6


class PublishError(ReleaseError):
    """An upload to a release host failed after its retries."""

    exit_code = 7
