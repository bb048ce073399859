"""Composition across processes (`_runtime/execution/composition.py`): a depended service declaring its
own workers runs in its own worker pool inside the same server, reached over loopback HTTP from
the inline instance and from the main service's workers, with its batching intact."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import nbformat
import pytest
from composition_services import Front, Pool, UsesPlain
from nbclient import NotebookClient

import nbserve
from nbserve._sdk.remote import ENDPOINTS_ENV, service_endpoint


def test_a_depended_service_on_two_workers_has_its_own_pool(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with nbserve.serve(Front) as handle:
        pools = handle.dependencies()
        assert list(pools) == ["Pool"]
        workers = pools["Pool"]["workers"]
        assert [w["index"] for w in workers] == [0, 1]
        pool_pids = {w["pid"] for w in workers}
        assert os.getpid() not in pool_pids
        assert len(pool_pids) == 2

        client = handle.client()
        request.addfinalizer(client.close)
        assert client.double(xs=[1, 2, 3]) == [2, 4, 6]  # sync API → pool's batchable API
        where = client.where()
        assert where["front"] == os.getpid()  # Front inline, Pool in one of its workers
        assert where["pool"] in pool_pids

        # to_async + asyncio.gather: both calls run at once, so each sees the other arrive.
        met = client.both(where=str(tmp_path))
        assert [m["who"] for m in met] == ["a", "b"]
        assert all(m["met"] for m in met), met
        assert {m["pid"] for m in met} <= pool_pids

        stats = handle.stats()
        assert stats["/double"]["count"] == 1
        assert stats["Pool /double"]["count"] == 1  # the pool's routes show in the status
        assert stats["Pool /meet"]["count"] == 2

        metrics = httpx.get(handle.url + "/metrics").text
        assert 'service_name="front"' in metrics
        assert 'service_name="pool"' in metrics
        # Pool's batchable API went through its dispatcher: a batch-size observation exists.
        assert any(
            line.startswith("bentoml_service_adaptive_batch_size_count")
            and 'service_name="pool"' in line
            for line in metrics.splitlines()
        ), metrics
        assert metrics.count("# TYPE bentoml_service_request_total counter") == 1
        # ...and its workers, with their pids (the pool's own status lines).
        worker_lines = [
            line
            for line in metrics.splitlines()
            if line.startswith("nbserve_worker_info") and 'service_name="Pool"' in line
        ]
        assert sorted(line.split('pid="')[1].split('"')[0] for line in worker_lines) == sorted(
            str(pid) for pid in pool_pids
        )
        pool_url = pools["Pool"]["url"]
    # Stopped with the main service: the pool's port is closed and its endpoint forgotten.
    assert service_endpoint("Pool") is None
    assert ENDPOINTS_ENV not in os.environ
    with pytest.raises(httpx.TransportError):
        httpx.get(pool_url + "/livez")


def test_the_main_services_workers_reach_the_pool(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with nbserve.serve(Front, workers=1) as handle:
        pool_pids = {w["pid"] for w in handle.dependencies()["Pool"]["workers"]}
        client = handle.client()
        request.addfinalizer(client.close)
        where = client.where()
        assert where["front"] != os.getpid()  # Front runs in its own worker...
        assert where["pool"] in pool_pids  # ...and calls into Pool's pool
        assert client.double(xs=[5]) == [10]
        met = client.both(where=str(tmp_path))
        assert all(m["met"] for m in met), met
        # Front's worker and Pool's two, in one nbserve_worker_info family.
        metrics = httpx.get(handle.url + "/metrics").text
        assert metrics.count("# TYPE nbserve_worker_info gauge") == 1
        workers = [line for line in metrics.splitlines() if line.startswith("nbserve_worker_info")]
        assert sorted(line.split('service_name="')[1].split('"')[0] for line in workers) == [
            "Front",
            "Pool",
            "Pool",
        ]


def test_without_workers_or_resources_the_dependency_stays_in_process() -> None:
    with nbserve.serve(UsesPlain) as handle:
        assert handle.dependencies() == {}
        with handle.client() as client:
            pids = client.pids()
        assert pids == {"front": os.getpid(), "plain": os.getpid()}


def test_nbserve_dependencies_inline_keeps_every_dependency_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBSERVE_DEPENDENCIES", "inline")
    with nbserve.serve(Front) as handle:
        assert handle.dependencies() == {}
        with handle.client() as client:
            assert client.where()["pool"] == os.getpid()
        assert Pool.name not in handle.stats()


def test_serve_dependencies_inline_keeps_them_in_process_and_a_typo_is_refused() -> None:
    with nbserve.serve(Front, dependencies="inline") as handle:
        assert handle.dependencies() == {}
        with handle.client() as client:
            assert client.where()["pool"] == os.getpid()
    with pytest.raises(ValueError, match="dependencies='pool'"):
        nbserve.serve(Front, dependencies="pool")  # type: ignore[arg-type]


def test_in_a_notebook_dependencies_stay_in_process_unless_asked(tmp_path: Path) -> None:
    here = str(Path(__file__).resolve().parent)
    cells = [
        f"import os, sys, nbserve\nsys.path.insert(0, {here!r})\n"
        "from composition_services import Front",
        # A notebook keeps the depended service in the kernel, workers declared or not...
        "with nbserve.serve(Front) as handle, handle.client() as client:\n"
        "    inline = (handle.dependencies(), client.where()['pool'] == os.getpid())",
        # ...unless asked: then Pool gets its own pool of 2 workers, as outside a notebook.
        "os.environ['NBSERVE_DEPENDENCIES'] = 'workers'\n"
        "with nbserve.serve(Front) as handle, handle.client() as client:\n"
        "    pools = handle.dependencies()\n"
        "    apart = (len(pools['Pool']['workers']), client.where()['pool'] != os.getpid())\n"
        "del os.environ['NBSERVE_DEPENDENCIES']",
        # ...or asked in the cell that serves it.
        "%%serve --dependencies workers --no-display --no-tester\nfrom composition_services import Front",
        "live = nbserve.services()['Front']\n"
        "asked = (len(live.handle.dependencies()['Pool']['workers']),\n"
        "         live.handle.client().where()['pool'] != os.getpid())\n"
        "nbserve.stop_all()",
        "print(inline, apart, asked)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    texts = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    assert texts == ["({}, True) (2, True) (2, True)\n"], outputs


def test_a_hot_swap_moves_to_a_new_pool_and_keeps_answering(
    request: pytest.FixtureRequest,
) -> None:
    with nbserve.serve(Front) as handle:
        client = handle.client()
        request.addfinalizer(client.close)
        before = handle.dependencies()["Pool"]["url"]
        assert client.double(xs=[1]) == [2]
        handle.swap(Front)  # the same class: the new deployment starts its own pool first
        after = handle.dependencies()["Pool"]["url"]
        assert after != before
        assert client.double(xs=[2]) == [4]
        assert client.where()["pool"] in {
            w["pid"] for w in handle.dependencies()["Pool"]["workers"]
        }
    with pytest.raises(httpx.TransportError):
        httpx.get(before + "/livez")
