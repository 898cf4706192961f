"""What the Airflow DAG needs from the pipeline beyond the stages: which failures a retry cannot fix."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipeline.errors import BadInput, LeakCheckFailed, PrivateDataInRelease, ReleaseConflict

# Failures of the inputs or of a gate: the same inputs fail the same way on every retry.
PERMANENT_FAILURES = (BadInput, LeakCheckFailed, PrivateDataInRelease, ReleaseConflict)


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """Turn a permanent failure (bad config or reference files, failed detector self-test, reject-rate gate,
    private data in a release, a conflicting published version) into Airflow's AirflowFailException, so the
    task fails at once with the message in its log; anything else (a real fault) propagates and is retried."""
    try:
        yield
    except PERMANENT_FAILURES as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__} (not retried): {exc}") from exc
