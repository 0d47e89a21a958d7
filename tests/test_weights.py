import pytest
import torch

from vdeblur import load_model
from vdeblur.weights import default_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.skipif(default_weights() is None, reason="no default weights shipped in this checkout")
def test_shipped_default_weights_load_and_change_a_blurry_image():
    model = load_model()  # no path: the shipped weights, checked against the manifest's sha256
    assert model.config.widths == (32, 64, 128) and model.config.global_residual
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(1, 3, 32, 32, generator=g)
    blurry = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1, count_include_pad=False)
    with torch.no_grad():
        out = model.restore(blurry)
    assert out.shape == blurry.shape and torch.isfinite(out).all()
    assert not torch.equal(out, blurry)
    entry = default_weights()
    assert entry.metrics and entry.recipe
