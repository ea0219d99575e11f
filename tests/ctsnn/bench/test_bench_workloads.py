"""The workload table of ``ctsnn.bench`` and the ``ctsnn bench`` command built on it."""

from __future__ import annotations

import importlib

import pytest

from ctsnn import cli
from ctsnn.bench import WORKLOADS, find_workload, workload_ids

DOC_IDS = {"w1": "dcls_shd", "w2": "eventprop_long", "w3": "delrec_shd", "w4": "lif_plain",
           "w5": "sim_continuous", "w7": "event_small", "y1": "yinyang_epoch"}


def test_table_maps_doc_ids_and_descriptive_ids_to_the_modules() -> None:
    assert [w.doc_id for w in WORKLOADS] == list(DOC_IDS)
    for doc_id, module in DOC_IDS.items():
        w = find_workload(doc_id)
        assert w.module == f"ctsnn.bench.{module}"
        assert find_workload(w.name) is w and w.name == module.replace("_", "-")
    assert workload_ids()[:len(DOC_IDS)] == list(DOC_IDS)
    with pytest.raises(KeyError, match="unknown workload"):
        find_workload("w9")


@pytest.mark.parametrize("doc_id", list(DOC_IDS))
def test_every_workload_module_has_main_and_its_workload_field(doc_id: str) -> None:
    w = find_workload(doc_id)
    module = importlib.import_module(w.module)
    assert callable(module.main)
    # the JSON "workload" field keeps the doc's id and the descriptive id
    assert module.WORKLOAD == f"{doc_id.upper()} {w.name}"


@pytest.mark.parametrize("workload_id", ["w4", "lif-plain"])
def test_cli_runs_a_workload_by_either_id(workload_id: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    module = importlib.import_module("ctsnn.bench.lif_plain")
    monkeypatch.setattr(module, "main", lambda **kw: calls.append(kw) or 0)
    assert cli.main(["bench", workload_id, "--quick", "--no-reference"]) == 0
    assert calls == [{"quick": True, "reference": False}]


def test_cli_knows_the_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["bench", "w9"])
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "`" not in text  # plain text, no reStructuredText
    assert all(w.doc_id in text and w.name in text for w in WORKLOADS)
