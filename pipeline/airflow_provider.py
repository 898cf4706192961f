"""Synthaudio as an Airflow provider (entry point `apache_airflow_provider`): it registers the asset URI schemes
of our releases, models and corpora, and how OpenLineage names them (`pipeline.lineage`)."""


def get_provider_info() -> dict:
    return {
        "package-name": "synthaudio",
        "name": "Synthaudio",
        "description": "Synthetic audio datasets: asset URIs of releases, models and private corpora (by hash).",
        "asset-uris": [{"schemes": ["synthaudio", "synthaudio-model", "synthaudio-corpus"], "handler": None,
                        "to_openlineage_converter": "pipeline.lineage.to_openlineage"}],
    }
