"""The contracts committed under `schemas/`, generated from the code (tests pin them).

    python -m pipeline.schemas [OUT_DIR]    # rewrite schemas/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"

MANIFEST_JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Synthaudio release manifest",
    "type": "object",
    "required": ["dataset", "version", "created_at", "code_version", "config", "config_sha256", "model_preset",
                 "model_weights_sha256", "speaker_encoder", "reference_set_fingerprint", "counts", "leak_check",
                 "feature_set", "quality", "content_sha256", "files"],
    "properties": {
        "dataset": {"type": "string"},
        "version": {"type": "string"},
        "schema_version": {"type": "integer", "minimum": 1},  # absent: 1 (releases before the synthetic label)
        "description": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "code_version": {"type": "object", "required": ["package", "git_commit"],
                         "properties": {"package": {"type": "string"}, "git_commit": {"type": ["string", "null"]}}},
        "config": {"type": "object"},
        "config_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "model_preset": {"type": "string"},
        "model_weights_sha256": {"type": ["string", "null"]},
        "lineage": {"type": ["object", "null"], "required": ["model_version", "model_sha256", "corpus_fingerprint"],
                    "properties": {"model_version": {"type": "string"},
                                   "model_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                   "corpus_fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
        "speaker_encoder": {"type": ["string", "null"]},
        "reference_set_fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "fidelity": {"type": ["object", "null"], "required": ["corpus", "column_shapes", "column_pair_trends"]},
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "leak_check": {"type": "object",
                       "required": ["threshold", "threshold_source", "target_recall", "rejection_rate",
                                    "max_reject_rate", "score_normalisation", "reference_eer",
                                    "false_positive_rate_at_threshold", "canaries_caught", "canaries_scored"],
                       "properties": {"threshold": {"type": "number"}, "rejection_rate": {"type": "number"},
                                      "threshold_source": {"enum": ["calibrated", "configured"]},
                                      "target_recall": {"type": "number"},
                                      "max_reject_rate": {"type": "number"},
                                      "score_normalisation": {"type": "string"},
                                      "max_fpr": {"type": "number"}, "calibration_recall": {"type": "number"},
                                      "recall_at_fpr_1pct": {"type": "number"},
                                      "recall_at_fpr_01pct": {"type": "number"},
                                      "recall_target_met": {"type": "boolean"},
                                      "condition_offsets": {"type": "object",
                                                            "additionalProperties": {"type": "number"}},
                                      "reference_eer": {"type": "number"},
                                      "false_positive_rate_at_threshold": {"type": "number"},
                                      "canaries_caught": {"type": "integer"}, "canaries_scored": {"type": "integer"}}},
        "feature_set": {"type": "string"},
        "quality": {"type": "object", "required": ["feature_set", "clips", "flagged", "action", "dropped"],
                    "properties": {
                        "clips": {"type": "integer", "minimum": 0}, "dropped": {"type": "integer", "minimum": 0},
                        "flagged": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                        "action": {"type": "object", "additionalProperties": {"enum": ["drop", "keep"]}}}},
        "content_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "files": {"type": "array", "items": {
            "type": "object", "required": ["path", "size", "sha256"],
            "properties": {"path": {"type": "string"}, "size": {"type": "integer", "minimum": 0},
                           "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    },
}


def generated_schemas() -> dict[str, object]:
    """File name -> content of every schema under schemas/."""
    from pipeline.config import config_json_schema
    from pipeline.export.schema import release_schema, schema_as_json
    from pipeline.features.extract import FEATURE_SCHEMA
    from pipeline.generation.stage import GENERATION_SCHEMA
    from pipeline.privacy.leakcheck import AUDIT_SCHEMA
    from pipeline.prompts.sampler import PROMPT_SCHEMA

    return {
        "config.schema.json": config_json_schema(),
        "manifest.schema.json": MANIFEST_JSON_SCHEMA,
        "release.arrow.json": schema_as_json(release_schema()),
        "prompts.arrow.json": schema_as_json(PROMPT_SCHEMA),
        "generation.arrow.json": schema_as_json(GENERATION_SCHEMA),
        "features.arrow.json": schema_as_json(FEATURE_SCHEMA),
        "leakcheck_audit.arrow.json": schema_as_json(AUDIT_SCHEMA),
    }


def render(content: object) -> str:
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or [SCHEMA_DIR])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, content in generated_schemas().items():
        (out / name).write_text(render(content))
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
