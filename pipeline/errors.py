"""Named exceptions. The CLI maps `BadInput` to exit code 2 and `PipelineFailure` to exit code 1."""


class BadInput(Exception):
    """The user's input (config, flags, files) is wrong; the message says what and how to fix it."""


class ConfigError(BadInput):
    """A build config is missing, unreadable or invalid."""


class PipelineFailure(Exception):
    """The run could not produce a release (a check failed, a stage crashed)."""


class LeakCheckFailed(PipelineFailure):
    """The leak check refused the run: detector self-test failed or too many clips rejected."""


class ReleaseConflict(PipelineFailure):
    """A release version already exists with different content; published versions are never rewritten."""


class PrivateDataInRelease(PipelineFailure):
    """A staged release holds a private string (a private config value, a reference speaker id or file name)."""
