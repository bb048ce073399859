"""The dashboard's reading of `/metrics`: batch size distributions and worker rows."""

from __future__ import annotations

import json

from nbserve._notebook.tester.stats import parse_metrics

METRICS = """\
# HELP bentoml_service_adaptive_batch_size Service adaptive batch size
# TYPE bentoml_service_adaptive_batch_size histogram
bentoml_service_adaptive_batch_size_bucket{le="1.0",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="0"} 2.0
bentoml_service_adaptive_batch_size_bucket{le="2.0",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="0"} 5.0
bentoml_service_adaptive_batch_size_bucket{le="4.0",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="0"} 5.0
bentoml_service_adaptive_batch_size_bucket{le="+Inf",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="0"} 6.0
bentoml_service_adaptive_batch_size_bucket{le="1.0",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="1"} 1.0
bentoml_service_adaptive_batch_size_bucket{le="2.0",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="1"} 1.0
bentoml_service_adaptive_batch_size_bucket{le="4.0",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="1"} 1.0
bentoml_service_adaptive_batch_size_bucket{le="+Inf",method_name="embed",runner_name="S",service_name="S",service_version="v",worker_index="1"} 1.0
bentoml_service_adaptive_batch_size_bucket{le="1.0",method_name="idle",runner_name="S",service_name="S",service_version="v",worker_index="0"} 0.0
bentoml_service_adaptive_batch_size_bucket{le="+Inf",method_name="idle",runner_name="S",service_name="S",service_version="v",worker_index="0"} 0.0
# HELP nbserve_worker_info A worker process of the service: 1 per worker, its details in labels.
# TYPE nbserve_worker_info gauge
nbserve_worker_info{service_name="S",worker_index="1",state="starting",pid="",devices="cuda:1",cuda_visible_devices="1"} 1
nbserve_worker_info{service_name="S",worker_index="0",state="ready",pid="42",devices="cuda:0",cuda_visible_devices="0"} 1
"""


def test_batches_per_api_summed_over_workers_and_workers_in_order() -> None:
    parsed = parse_metrics(METRICS)
    # Cumulative buckets become per-bucket counts; +Inf is None (strict JSON has no Infinity).
    assert parsed["batches"] == {"embed": [[1.0, 3.0], [2.0, 3.0], [4.0, 0.0], [None, 1.0]]}
    assert parsed["workers"] == [
        {"index": 0, "state": "ready", "pid": "42", "devices": "cuda:0"},
        {"index": 1, "state": "starting", "pid": "", "devices": "cuda:1"},
    ]
    json.dumps(parsed, allow_nan=False)


def test_nothing_yet() -> None:
    assert parse_metrics("") == {"batches": {}, "workers": []}
