"""Alerts: the DAGs notify through Airflow's notifier mechanism (`on_failure_callback` / `on_success_callback`)
with the SMTP provider's notifier, when a build fails, a gate trips or a release is published.

A message names the dataset, the version and what happened: the gate and its figure (the gate's own message, e.g.
"leak check rejected 3 of 24 clips (rate 0.125 > privacy.max_reject_rate 0.05)"), the failed task and its error,
or the published release's clip count and content hash. Imported when the DAG file is parsed: it imports Airflow's
SDK only; the SMTP provider is loaded when a message is sent.
"""

from __future__ import annotations

import html

from airflow.sdk.bases.notifier import BaseNotifier

GATES = ("LeakCheckFailed", "PrivateDataInRelease")  # a gate stopped the release (not a fault of the machinery)


def event_of(exception: BaseException | None) -> str:
    """`gate` when a gate stopped the build (the exception or its cause), else `failure`."""
    seen = exception
    while seen is not None:
        if type(seen).__name__ in GATES or any(f"{gate} (not retried)" in str(seen) for gate in GATES):
            return "gate"
        seen = seen.__cause__
    return "failure"


def message(dataset: str, version: str | None, event: str, task: str, detail: str) -> tuple[str, str]:
    """(subject, HTML body) of one notification."""
    what = {"failure": "build failed", "gate": "gate tripped, nothing published", "published": "release published"}[event]
    subject = f"[synthaudio] {dataset} {version or '(version not resolved)'}: {what}"
    body = (f"<p><b>{html.escape(what)}</b></p><ul><li>dataset: {html.escape(dataset)}</li>"
            f"<li>version: {html.escape(version or 'not resolved')}</li><li>task: {html.escape(task)}</li></ul>"
            f"<pre>{html.escape(detail)}</pre>")
    return subject, body


class BuildNotifier(BaseNotifier):
    """Sends the build's notifications of the configured `events` through the SMTP provider's notifier."""

    template_fields = ()

    def __init__(self, dataset: str, to: list[str], from_email: str, smtp_conn_id: str, events: list[str]):
        super().__init__()
        self.dataset, self.to, self.from_email = dataset, list(to), from_email
        self.smtp_conn_id, self.events = smtp_conn_id, set(events)

    def notify(self, context) -> None:
        ti = context.get("ti") or context.get("task_instance")
        exception = context.get("exception")
        task = getattr(ti, "task_id", "?")
        if exception is None:  # success: the export task returned the release folder
            event, release = "published", ti.xcom_pull(task_ids=task)
            detail = _published(release)
        else:
            event, detail = event_of(exception), f"{type(exception).__name__}: {exception}"
        if event not in self.events:
            return
        subject, body = message(self.dataset, _version(context, ti), event, task, detail)
        self.send(subject, body, context)

    def send(self, subject: str, body: str, context) -> None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=self.to, from_email=self.from_email, subject=subject, html_content=body,
                     smtp_conn_id=self.smtp_conn_id).notify(context)


def _version(context, ti) -> str | None:
    """The version `plan` resolved (its XCom), or the run's `version` param."""
    try:
        planned = ti.xcom_pull(task_ids="plan")
        if planned:
            return planned[0]["version"]
    except Exception:  # noqa: BLE001 - the plan task may not have run
        pass
    return (context.get("params") or {}).get("version")


def _published(release: str | None) -> str:
    import json
    from pathlib import Path

    if not release:
        return "published (no release folder returned)"
    manifest = json.loads((Path(release) / "manifest.json").read_text())
    return (f"{sum(manifest['counts'].values())} clips {manifest['counts']}, content sha256 "
            f"{manifest['content_sha256']}, first-pass rejection rate {manifest['leak_check']['rejection_rate']:.3f}")
