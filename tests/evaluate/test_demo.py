import tomllib

from nnslim.compress import recipe
from nnslim.evaluate.demo import MODES
from nnslim.video.codecs import get_codec


def test_every_demo_mode_names_real_codecs_and_a_valid_recipe() -> None:
    for mode in MODES.values():
        for name in mode.codecs.split(","):
            get_codec(name)
        stages = recipe.from_dict(tomllib.loads(mode.recipe_toml())).stages
        assert [type(s).__name__ for s in stages] == ["Iterate", "LowRank", "Quantize"]
