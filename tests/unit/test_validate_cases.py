"""`qimeng-serve validate`'s case list (no GPU): the adversarial "ramp" cases, whose row maxima keep rising as a
kernel walks the keys from the last block down, are there for dense prefill, and key_ramp makes them so."""

import torch

from qimeng_serve.validate import cases, key_ramp


def test_dense_prefill_has_the_ramp_cases():
    names = [name for name, _ in cases("dense_prefill")]
    assert "L=4099 g=4 full ramp" in names and "L=2000 g=4 causal ramp" in names
    assert not [n for n, _ in cases("paged_prefill") if "ramp" in n]


def test_key_ramp_makes_the_row_max_rise_towards_the_first_keys():
    k = torch.ones(2, 3, 4099, 8)
    r = key_ramp(k)
    assert r.shape == k.shape
    assert torch.allclose(r[..., 0, :], torch.full((2, 3, 8), 16.0))
    assert torch.allclose(r[..., -1, :], torch.ones(2, 3, 8))
    scale = r[0, 0, :, 0]
    assert bool((scale[1:] < scale[:-1]).all())  # falls along the keys: the walk (last block first) sees it rise
    # a row's scores against 128-key blocks, walked last block first: the max grows by more than the lazy
    # rescale's 8 log2 units somewhere, and stays within it elsewhere (both branches of the update run)
    gen = torch.Generator().manual_seed(0)
    q, kk = torch.randn(16, 128, generator=gen), key_ramp(torch.randn(4099, 128, generator=gen))
    s = (q @ kk.T) / 128 ** 0.5 * 1.4426950408889634
    block_max = torch.stack([s[:, i:i + 128].amax(1) for i in range(0, 4099, 128)][::-1], 1)
    running = torch.cummax(block_max, 1).values
    jumps = running[:, 1:] - running[:, :-1]
    assert bool((jumps > 8).any()) and bool((jumps < 8).any())
