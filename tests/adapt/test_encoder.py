import numpy as np
import pytest

from nnslim.adapt import encoder, params, update
from nnslim.adapt.encoder import AdaptConfig
from nnslim.errors import NnslimError
from nnslim.models.apply import filter_frames
from tests.adapt.common import ARCH, tiny_filter, tiny_pair

SHA = "ef" * 32


def test_the_decoder_makes_the_encoders_output_bit_for_bit_and_the_switch_never_loses() -> None:
    base, pair = tiny_filter(), tiny_pair()
    config = AdaptConfig(steps=5, batch=2, patch=32, nnr_qps=(-40, -32), rd_frame_step=2, threads=1)
    raw = encoder.train_update(base, ARCH, [pair], config)
    assert raw.shape == (17,) and np.abs(raw).max() > 0
    base_filtered = filter_frames(base, pair.decoded, pair.qp)
    coded, trials = encoder.code_sequence_qp(base, SHA, pair, base_filtered, raw, config, "x265")
    assert [t["nnr_qp"] for t in trials] == [None, -40, -32]
    decoded = update.decode(coded.data, base, SHA)
    assert np.array_equal(encoder.apply_decoded(base, decoded, pair.decoded), coded.output)
    codec = encoder.psnr_y(pair.original, pair.decoded)
    assert encoder.psnr_y(pair.original, coded.output) >= codec
    assert (
        encoder.psnr_y(pair.original, coded.output)
        >= encoder.psnr_y(
            pair.original, np.where(decoded.flags.any(), filter_frames(base, pair.decoded, pair.qp), pair.decoded)
        )
        - 1.0
    )
    assert encoder.kbps_with(pair, coded.signalled_bytes) > pair.kbps


@pytest.mark.parametrize("mode", ["biases", "affine", "last"])
def test_every_mode_is_decoded_to_the_model_the_encoder_evaluates(mode: str) -> None:
    base, pair = tiny_filter(), tiny_pair()
    config = AdaptConfig(mode=mode, steps=5, batch=2, patch=32, threads=1)  # type: ignore[arg-type]
    raw = encoder.train_update(base, ARCH, [pair], config)
    assert raw.shape == (params.size(base, config.mode),) and np.abs(raw).max() > 0
    values = encoder.quantized(raw, -40)[0]
    frames, height, width = pair.decoded.shape
    made = update.Update(SHA, pair.name, "x265", pair.qp, config.mode, values, -40, None, None, width, height, frames)
    decoded = update.decode(update.encode(made), base, SHA)
    evaluated = filter_frames(params.apply_update(base, config.mode, values), pair.decoded, pair.qp)
    assert np.array_equal(encoder.apply_decoded(base, decoded, pair.decoded), evaluated)


def test_the_switch_alone_never_loses_against_the_codec() -> None:
    base, pair = tiny_filter(seed=3), tiny_pair()
    config = AdaptConfig(mode="none", threads=1)
    base_filtered = filter_frames(base, pair.decoded, pair.qp)
    coded, _ = encoder.code_sequence_qp(base, SHA, pair, base_filtered, np.zeros(0, np.float32), config, "x265")
    assert encoder.psnr_y(pair.original, coded.output) >= encoder.psnr_y(pair.original, pair.decoded)
    assert coded.signalled_bytes >= update.MODE_BYTES


def test_per_qp_updates_are_trained_on_each_qps_frames_alone() -> None:
    base, pairs = tiny_filter(), [tiny_pair(qp=27, seed=1), tiny_pair(qp=37, seed=2)]
    config = AdaptConfig(per_qp=False, steps=5, batch=2, patch=32, threads=1)
    shared = encoder.train_updates(base, ARCH, pairs, config)
    assert shared[27] is shared[37]
    own = encoder.train_updates(base, ARCH, pairs, AdaptConfig(per_qp=True, steps=5, batch=2, patch=32, threads=1))
    assert sorted(own) == [27, 37] and not np.array_equal(own[27], own[37])
    assert np.array_equal(own[37], encoder.train_update(base, ARCH, [pairs[1]], config))


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"batch": 0}, "--batch and --patch"), ({"patch": -4}, "--batch and --patch"), ({"steps": -1}, "steps")],
)
def test_settings_out_of_range_are_refused(settings: dict[str, int], message: str) -> None:
    with pytest.raises(NnslimError, match=message):
        AdaptConfig(**settings)  # type: ignore[arg-type]
