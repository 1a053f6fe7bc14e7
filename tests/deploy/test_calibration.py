import numpy as np
import pytest

from nnslim.deploy.calibration import FeedReader, tile_feeds
from nnslim.errors import NnslimError
from nnslim.models.data import LumaPairs


def _flat_pairs() -> list[LumaPairs]:
    """Two pairs whose every decoded frame is one distinct even value; the originals are odd, so never drawn."""
    pairs = []
    for index, qp in enumerate((22, 37)):
        decoded = np.stack([np.full((40, 64), 2 * (10 * index + f), np.uint8) for f in range(4)])
        pairs.append(LumaPairs(f"S{index}", qp, decoded, decoded + 1, 100.0))
    return pairs


def test_tiles_come_from_the_decoded_frames_given_with_their_qp() -> None:
    pairs = _flat_pairs()
    qp_of = {int(v): p.qp for p in pairs for v in np.unique(p.decoded)}
    feeds = tile_feeds(pairs, 40, 16, seed=3, qp_input=True)
    assert len(feeds) == 40
    for feed in feeds:
        assert set(feed) == {"luma", "qp"}
        luma, qp = feed["luma"], feed["qp"]
        assert luma.shape == (1, 1, 16, 16) and luma.dtype == np.float32 and qp.dtype == np.float32
        values = np.unique(np.rint(luma * 255).astype(int))
        assert len(values) == 1 and int(values[0]) in qp_of  # one decoded frame, never an original (odd)
        assert qp.tolist() == [qp_of[int(values[0])]]
    drawn = {int(np.rint(f["luma"].max() * 255)) for f in feeds}
    assert {qp_of[v] for v in drawn} == {22, 37}  # both pairs drawn


def test_the_draw_is_seeded_and_small_frames_give_whole_tiles() -> None:
    pairs = _flat_pairs()
    first, again = tile_feeds(pairs, 8, 16, 0, False), tile_feeds(pairs, 8, 16, 0, False)
    assert all(set(f) == {"luma"} for f in first)
    assert all(np.array_equal(a["luma"], b["luma"]) for a, b in zip(first, again, strict=True))
    assert tile_feeds(pairs, 1, 1000, 0, False)[0]["luma"].shape == (1, 1, 40, 64)


def test_no_frames_or_no_tiles_are_refused() -> None:
    with pytest.raises(NnslimError, match="no decoded frames"):
        tile_feeds([], 4, 16, 0, False)
    with pytest.raises(NnslimError, match="at least 1"):
        tile_feeds(_flat_pairs(), 0, 16, 0, False)


def test_the_reader_yields_only_what_it_is_given_then_none() -> None:
    feeds = tile_feeds(_flat_pairs(), 3, 16, 0, True)
    reader = FeedReader(feeds)
    assert len(reader) == 3
    assert list(reader) == feeds
    assert reader.get_next() is None
