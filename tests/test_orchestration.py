import pytest
from airflow.sdk.exceptions import AirflowFailException

from pipeline.errors import BadInput, LeakCheckFailed, PrivateDataInRelease, ReleaseConflict
from pipeline.orchestration import fail_without_retry


@pytest.mark.parametrize("error", [BadInput("configs/x.yaml: n_clips: bad"), LeakCheckFailed("self-test failed"),
                                   PrivateDataInRelease("README.md holds"), ReleaseConflict("exists")])
def test_permanent_failures_fail_the_task_without_retry_and_keep_the_message(error):
    with pytest.raises(AirflowFailException, match="not retried") as raised:
        with fail_without_retry():
            raise error
    assert str(error) in str(raised.value) and raised.value.__cause__ is error


def test_real_faults_are_left_to_airflow_retries():
    with pytest.raises(OSError, match="disk"):
        with fail_without_retry():
            raise OSError("disk went away")
