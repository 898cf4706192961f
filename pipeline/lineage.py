"""OpenLineage: the DAGs' task events name what a release and a model were made from, so a lineage tool can draw
corpus -> model -> release.

Airflow's OpenLineage provider emits an event for every task (transport: `AIRFLOW__OPENLINEAGE__TRANSPORT`, e.g.
`{"type": "file", "log_file_path": "lineage.jsonl"}` or `{"type": "console"}`). The train and export tasks report
their inputs and outputs to Airflow's hook-lineage collector, which the provider turns into the events' datasets:

    synthaudio-corpus://<dataset>/<corpus fingerprint>        input of train and of export (a hash: nothing private)
    synthaudio-model://<dataset>/<model version>              output of train, input of export (extra: weights sha256)
    synthaudio://<dataset>/<version>                          output of export (extra: content sha256)

Our package registers these URI schemes with Airflow as a provider (`pipeline.airflow_provider`) with the
converter below, so the provider knows how to name them as OpenLineage datasets.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = ("synthaudio", "synthaudio-model", "synthaudio-corpus")


class _Task:
    """The lineage context of what a task reports itself (the collector keys entries by it)."""


_CONTEXT = _Task()


def to_openlineage(asset, lineage_context=None):
    """An Airflow Asset of our schemes as an OpenLineage dataset: namespace `<scheme>://<dataset>`, name the rest."""
    from openlineage.client.event_v2 import Dataset

    parts = urlsplit(asset.uri)
    return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=parts.path.lstrip("/") or parts.netloc)


def report(inputs: list[tuple[str, dict]], outputs: list[tuple[str, dict]]) -> None:
    """Hand (uri, extra) inputs and outputs of the running task to Airflow's hook-lineage collector (a no-op when
    no lineage reader, such as the OpenLineage provider, is enabled)."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    for uri, extra in inputs:
        collector.add_input_asset(_CONTEXT, uri=uri, asset_extra=extra)
    for uri, extra in outputs:
        collector.add_output_asset(_CONTEXT, uri=uri, asset_extra=extra)


def corpus_uri(dataset: str, fingerprint: str) -> str:
    return f"synthaudio-corpus://{dataset}/{fingerprint}"


def model_uri(dataset: str, version: str) -> str:
    return f"synthaudio-model://{dataset}/{version}"


def release_uri(dataset: str, version: str) -> str:
    return f"synthaudio://{dataset}/{version}"
