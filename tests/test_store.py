from pathlib import Path

from nnslim import __version__
from nnslim.store import ResultsStore


def test_runs_are_recorded_and_listed(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "sub" / "runs.sqlite")
    first = store.record("encode", {"qp": 32}, {"kbps": 12.5}, {"x264": "165"})
    second = store.record("codecs", {"qps": [22, 37]}, {"summary": []}, {})
    assert second > first
    runs = store.runs()
    assert [r.kind for r in runs] == ["encode", "codecs"]
    assert runs[0].params == {"qp": 32} and runs[0].results == {"kbps": 12.5}
    assert runs[0].versions == {"x264": "165"} and runs[0].nnslim_version == __version__
    assert [r.id for r in ResultsStore(tmp_path / "sub" / "runs.sqlite").runs("codecs")] == [second]
