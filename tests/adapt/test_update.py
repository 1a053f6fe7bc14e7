from dataclasses import replace

import numpy as np
import pytest

from nnslim.adapt import update
from nnslim.adapt.params import size
from nnslim.bitstream import nnr
from nnslim.bitstream.container import BitstreamError, read, write
from tests.adapt.common import tiny_filter

SHA = "ab" * 32


def _update(**changes: object) -> update.Update:
    base = tiny_filter()
    rng = np.random.default_rng(0)
    flags = rng.random((4, 1, 2)) < 0.5
    values = (rng.normal(0, 0.01, size(base, "biases"))).astype(np.float32)
    made = update.Update(SHA, "Tiny", "x265", 37, "biases", values, -36, 64, flags, 80, 48, 4)
    return replace(made, **changes)  # type: ignore[arg-type]


def test_an_update_decodes_to_its_quantized_values_and_exact_flags() -> None:
    made = _update()
    data = update.encode(made)
    decoded = update.decode(data, tiny_filter(), SHA)
    assert np.array_equal(decoded.flags, made.flags)
    assert np.abs(decoded.values - made.values).max() <= 0.5 * nnr.step_size(-36) + 1e-7
    assert update.decode(update.encode(replace(made, values=decoded.values)), tiny_filter(), SHA).values.tobytes() == (
        decoded.values.tobytes()
    )
    chunk = read(data).chunks[0]
    assert update.signalled_bytes(data) == len(chunk) - len(nnr.header()) + update.MODE_BYTES


def test_an_update_whose_nnr_header_units_are_not_the_ones_every_update_has_is_refused() -> None:
    container = read(update.encode(_update()))
    chunk = bytearray(container.chunks[0])
    chunk[7] ^= 0x80  # the parameter set's topology_carriage_flag, which NNCodec's decoder ignores
    data = write(replace(container, chunks=(bytes(chunk),)))
    for refuse in (lambda: update.decode(data, tiny_filter(), SHA), lambda: update.signalled_bytes(data)):
        with pytest.raises(BitstreamError, match="header units"):
            refuse()


def test_a_uniform_switch_costs_its_mode_byte_only_and_nothing_is_sent_for_nothing() -> None:
    for on in (False, True):
        uniform = _update(values=np.zeros(0, np.float32), mode="none", nnr_qp=None, flags=np.full((4, 1, 2), on))
        assert update.signalled_bytes(update.encode(uniform)) == update.MODE_BYTES
        decoded = update.decode(update.encode(uniform), tiny_filter(), SHA)
        assert decoded.switch == ("on" if on else "off") and np.array_equal(decoded.flags, uniform.flags)
    nothing = replace(uniform, block=None, flags=None)
    assert update.signalled_bytes(update.encode(nothing)) == 0


def _tampered(data: bytes, **fields: object) -> bytes:
    container = read(data)
    return write(replace(container, model=container.model | fields))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"base_sha256": "cd" * 32}, "made for the filter with SHA-256"),
        ({"frames": 1 << 40}, "frames must be an integer from 1"),
        ({"width": 16384, "height": 16384, "frames": 1 << 20}, "more than the limit"),
        ({"values": 5}, "5 values; a biases update of this filter has 17"),
        ({"frames": 5}, "do not fit its description"),
        ({"format": "nnslim-filter"}, "not an update file"),
        ({"mode": "everything"}, "mode must be one of"),
        ({"switch": "on"}, "do not fit its description"),
        ({"switch": "sometimes"}, "switch must be on, off or blocks"),
        ({"block": 7}, "block must be one of"),
    ],
)
def test_hostile_updates_are_refused_before_decoding(fields: dict[str, object], message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        update.decode(_tampered(update.encode(_update()), **fields), tiny_filter(), SHA)


def test_a_truncated_update_is_refused() -> None:
    data = update.encode(_update())
    with pytest.raises(BitstreamError, match="truncated"):
        update.decode(data[:-9], tiny_filter(), SHA)


@pytest.mark.parametrize("key", update.FIELDS)
def test_an_update_missing_a_field_is_refused_by_name(key: str) -> None:
    container = read(update.encode(_update()))
    description = {k: v for k, v in container.model.items() if k != key}
    with pytest.raises(BitstreamError, match=f"no {key} in its description"):
        update.decode(write(replace(container, model=description)), tiny_filter(), SHA)


def test_an_update_of_another_format_version_is_refused_with_its_version() -> None:
    older = _tampered(update.encode(_update()), version=1)
    with pytest.raises(BitstreamError, match="format version 1; this nnslim reads 2"):
        update.decode(older, tiny_filter(), SHA)
