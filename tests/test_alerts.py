"""Alerts through Airflow's notifier mechanism and the SMTP provider, received by a local SMTP server: a failed
task, a tripped gate (its figure in the message) and a published release each send a mail; `events` filters."""

import base64
import email

import pytest

from pipeline.alerts import BuildNotifier
from pipeline.errors import LeakCheckFailed
from pipeline.export.release import export
from pipeline.orchestration import fail_without_retry
from pipeline.testing import fake_finished_run, smtp_sink


class TaskInstance:
    """What a notifier reads of a task instance: its id and XComs (plan's shards, export's release folder)."""

    def __init__(self, task_id: str, release: str | None = None):
        self.task_id, self.release = task_id, release

    def xcom_pull(self, task_ids):
        return [{"shard": 0, "version": "2026-03-01"}] if task_ids == "plan" else self.release


def _gate_exception() -> BaseException:
    try:
        with fail_without_retry():
            raise LeakCheckFailed("leak check rejected 3 of 24 clips (rate 0.125 > privacy.max_reject_rate 0.05)")
    except Exception as exc:  # noqa: BLE001 - the AirflowFailException the task raises
        return exc


def _read(raw: str) -> tuple[str, str, str]:
    message = email.message_from_string(raw)
    part = next(p for p in message.walk() if p.get_content_type() == "text/html")
    return message["Subject"], message["To"], base64.b64decode(part.get_payload()).decode()


def test_a_failure_a_gate_and_a_publication_each_send_a_mail_that_says_what_happened(tmp_path):
    release = export(fake_finished_run(tmp_path, n_clips=3))
    notifier = BuildNotifier("default", ["owner@example.org", "oncall@example.org"], "synthaudio@localhost",
                             "smtp_test", ["failure", "gate", "published"])
    with smtp_sink() as mails:
        notifier.notify({"ti": TaskInstance("shard.generate"), "exception": RuntimeError("CUDA error: device lost")})
        notifier.notify({"ti": TaskInstance("export"), "exception": _gate_exception()})
        notifier.notify({"ti": TaskInstance("export", str(release))})
    (failed, failed_to, failed_body), (gate, _, gate_body), (published, _, published_body) = map(_read, mails)
    assert failed == "[synthaudio] default 2026-03-01: build failed"
    assert failed_to == "owner@example.org, oncall@example.org"
    assert "shard.generate" in failed_body and "CUDA error: device lost" in failed_body
    assert gate == "[synthaudio] default 2026-03-01: gate tripped, nothing published"
    assert "rejected 3 of 24 clips (rate 0.125 &gt; privacy.max_reject_rate 0.05)" in gate_body
    assert published == "[synthaudio] default 2026-03-01: release published"
    assert "3 clips" in published_body and "content sha256" in published_body


@pytest.mark.parametrize("events, sent", [(["gate"], 1), (["published"], 0)])
def test_only_the_configured_events_notify(events, sent):
    notifier = BuildNotifier("default", ["owner@example.org"], "synthaudio@localhost", "smtp_test", events)
    with smtp_sink() as mails:
        notifier.notify({"ti": TaskInstance("leakcheck"), "exception": RuntimeError("a fault")})
        notifier.notify({"ti": TaskInstance("leakcheck"), "exception": _gate_exception()})
    assert len(mails) == sent


def test_the_dags_notifier_takes_the_config_models_defaults(monkeypatch):
    """The DAG file reads `alerts:` from the YAML itself (parsing may not import the config model); what it leaves
    unset must mean what the config model documents."""
    import sys

    from pipeline.config import AlertsConfig
    from pipeline.testing import REPO_ROOT

    monkeypatch.syspath_prepend(str(REPO_ROOT / "dags"))
    monkeypatch.delitem(sys.modules, "build_dataset", raising=False)
    from build_dataset import notifier

    built, documented = notifier("default", {"email": ["owner@example.org"]}), AlertsConfig(email=["owner@example.org"])
    assert (built.from_email, built.smtp_conn_id, built.events) == (
        documented.from_email, documented.smtp_conn_id, set(documented.events))
