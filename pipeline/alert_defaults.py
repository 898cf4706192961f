"""Defaults of a config's `alerts:`, written once for the config model (`config.AlertsConfig`) and the DAG file's
notifier (`dags/build_dataset.py`), which reads the YAML itself: parsing DAGs may import neither pydantic nor the
config model. Imports nothing."""

FROM_EMAIL = "synthaudio@localhost"
SMTP_CONN_ID = "smtp_default"
EVENTS = ("failure", "gate", "published")  # a failed task (after its retries), a tripped gate, a published release
