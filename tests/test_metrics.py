import pytest
import torch

from vdeblur.metrics import expected_psnr_for_noise, psnr, quantize, ssim


def test_identical_images_are_perfect():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_psnr_of_known_noise_level():
    g = torch.Generator().manual_seed(1)
    x = torch.full((1, 3, 64, 64), 0.5)
    sigma = 0.05
    noisy = x + sigma * torch.randn(x.shape, generator=g)
    assert float(psnr(noisy, x)) == pytest.approx(expected_psnr_for_noise(sigma), abs=0.1)
    assert expected_psnr_for_noise(sigma) == pytest.approx(26.02, abs=0.01)


def test_ssim_falls_with_noise_and_is_symmetric():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 48, 48, generator=g)
    small = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    big = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert 1.0 > float(ssim(small, x)) > float(ssim(big, x)) > 0.0
    assert float(ssim(small, x)) == pytest.approx(float(ssim(x, small)), abs=1e-12)


def test_ssim_matches_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 40, 40, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = skimage_metrics.structural_similarity(
        x.permute(1, 2, 0).double().numpy(), y.permute(1, 2, 0).double().numpy(), channel_axis=2,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert float(ssim(y, x)) == pytest.approx(ref, abs=1e-3)


def test_quantize_to_8_bit_levels():
    x = torch.tensor([-0.1, 0.0, 0.5, 1.2])
    q = quantize(x)
    assert torch.equal(q * 255, torch.round(q * 255))
    assert float(q.min()) == 0.0 and float(q.max()) == 1.0
    assert float(q[2]) == pytest.approx(128 / 255, abs=1e-6)


def test_psnr_refuses_what_it_would_score_wrong():
    """RGB against grey broadcast to a number (7.7 dB), and 8-bit levels scored -40 dB."""
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.rand(1, 3, 20, 20), torch.rand(1, 1, 20, 20))
    with pytest.raises(ValueError, match="float images in"):
        psnr(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8, dtype=torch.uint8))
