"""Losses of Section II-C: values worked out by hand on tiny tensors, plus behaviour checks.

Probabilities are given as p1 = p(water); the logits log(1 - p1), log(p1) reproduce them under
softmax, so each hand value is checked both from logits and from probabilities.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from backend.losses import create_loss, list_losses
from backend.losses.base import pair_slices

ALL = ["ce", "sd", "ce+sd", "seg", "edge", "seg+edge"]
ln = math.log


def probs(p1) -> torch.Tensor:
    """(H, W) or (B, H, W) water probabilities -> (B, 2, H, W) float64 probabilities."""
    p1 = torch.as_tensor(p1, dtype=torch.float64)
    if p1.ndim == 2:
        p1 = p1[None]
    return torch.stack([1 - p1, p1], dim=1)


def logits(p1) -> torch.Tensor:
    return probs(p1).log()


def tgt(t) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.int64)
    return t[None] if t.ndim == 2 else t


def both_forms(name, p1, target, image=None, **kw):
    """The loss from logits and from probabilities; asserts they agree, returns the value."""
    a = float(create_loss(name, **kw)(logits(p1), tgt(target), image))
    b = float(create_loss(name, from_logits=False, **kw)(probs(p1), tgt(target), image))
    assert a == pytest.approx(b, rel=1e-6)
    return a


# ---------------------------------------------------------------------------- registry


def test_registry_names_heads_and_errors():
    assert list_losses() == ALL
    for name in ALL:
        loss = create_loss(name)
        assert loss.num_heads == (2 if "+" in name else 1)
        assert loss.name == name
    with pytest.raises(ValueError, match="valid losses: ce, sd, ce\\+sd, seg, edge, seg\\+edge"):
        create_loss("dice")
    with pytest.raises(ValueError, match="no option.*lam.*valid options"):
        create_loss("ce", lam=10)
    with pytest.raises(ValueError, match="lam"):
        create_loss("seg", lam=-1.0)
    assert create_loss("ce+sd").weights == (1.0, 0.7)
    assert create_loss("seg+edge", lam=30).first.lam == 30


def test_input_errors_are_clear():
    ce = create_loss("ce")
    x = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="target shape"):
        ce(x, torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        ce(torch.zeros(1, 1, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="0 \\(land\\), 1 \\(water\\)"):
        ce(x, torch.full((1, 3, 3), 2))
    with pytest.raises(ValueError, match="integer"):
        ce(x, torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="needs the model input image"):
        create_loss("seg")(x, torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="heads=2"):
        create_loss("ce+sd")((x, x, x), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="heads=1"):
        ce((x, x), torch.zeros(1, 3, 3, dtype=torch.long))


# ---------------------------------------------------------------------------- L_CE (1)

P1_2x2 = [[0.8, 0.25], [0.5, 0.9]]
T_2x2 = [[1, 0], [255, 1]]


def test_ce_by_hand():
    # valid pixels: water p1 = 0.8, land p0 = 0.75, water p1 = 0.9 (the 0.5 pixel is ignored)
    # L = -(ln 0.8 + ln 0.75 + ln 0.9) / 3 = -ln(0.54) / 3 = 0.2053954
    assert both_forms("ce", P1_2x2, T_2x2) == pytest.approx(-ln(0.54) / 3, rel=1e-9)
    ref = F.cross_entropy(logits(P1_2x2), tgt(T_2x2), ignore_index=255)
    assert float(ref) == pytest.approx(0.2053954, rel=1e-6)


# ---------------------------------------------------------------------------- L_SD (2)


def test_dice_by_hand_batch_and_per_image():
    eps = 1e-5
    # image A = P1_2x2 / T_2x2: sum y p = 0.8 + 0.9 = 1.7; sum y = 2; sum p = 0.8 + 0.25 + 0.9
    # = 1.95 -> L = 1 - (3.4 + eps) / (3.95 + eps) = 0.1392402
    assert both_forms("sd", P1_2x2, T_2x2) == pytest.approx(
        1 - (3.4 + eps) / (3.95 + eps), rel=1e-9
    )
    # add image B: pure land, p1 = 0.1 on its 4 pixels
    p1 = [P1_2x2, [[0.1, 0.1], [0.1, 0.1]]]
    t = [T_2x2, [[0, 0], [0, 0]]]
    # batch sums: sum y p = 1.7, sum y = 2, sum p = 1.95 + 0.4 = 2.35 -> 1 - 3.4 / 4.35 = 0.218390
    assert both_forms("sd", p1, t) == pytest.approx(1 - (3.4 + eps) / (4.35 + eps), rel=1e-9)
    # per image: B alone = 1 - eps / (0.4 + eps) = 0.999975; mean with A = 0.569608
    per_image = (1 - (3.4 + eps) / (3.95 + eps) + 1 - eps / (0.4 + eps)) / 2
    assert both_forms("sd", p1, t, per_image=True) == pytest.approx(per_image, rel=1e-9)


def test_dice_perfect_prediction_is_zero_with_factor_2():
    # y = p exactly: 1 - (2 * 2 + eps) / (2 + 2 + eps) = 0 (it would be 0.5 without the 2)
    big = torch.tensor([[[-1e4, 1e4], [1e4, -1e4]]])  # water logit per pixel
    out = torch.stack([torch.zeros_like(big), big], dim=1)
    t = tgt([[0, 1], [1, 0]])
    assert float(create_loss("sd")(out, t)) == 0.0
    # a pure-land image predicted all land: 1 - eps / eps = 0 in both reductions
    land = torch.stack([torch.full((1, 2, 2), 1e4), torch.zeros(1, 2, 2)], dim=1)
    assert float(create_loss("sd", per_image=True)(land, tgt([[0, 0], [0, 0]]))) == 0.0
    # ... and predicted all water: 1 - eps / (4 + eps) ~ 1
    water = land.flip(1)
    assert float(create_loss("sd")(water, tgt([[0, 0], [0, 0]]))) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------- L_Seg (4)


def test_seg_by_hand_2x2_colour_weights():
    # pixels a=(0,0) b=(0,1) c=(1,0) d=(1,1); in a 2 x 2 image every pair is 8-adjacent
    # (6 unordered pairs). One channel x: a=b=c=0, d=2.
    # ||x_i - x_j||^2: ab 0, ac 0, bc 0, ad 4, bd 4, cd 4 -> sigma = 12 / 6 = 2
    # weights: 1 for ab, ac, bc; exp(-4 / 2) = exp(-2) for ad, bd, cd
    # p1: a .8, b .6, c .8, d .2; target a, b, c water, d land
    # nll = -(ln .8 + ln .6 + ln .8 + ln .8)          [d: p0 = .8]  = 1.1802563
    # sum_c dp_c^2 = 2 dp1^2: ab .08, ac 0, bc .08, ad .72, bd .32, cd .72
    # weighted sum over unordered pairs = .16 + 1.76 exp(-2) = 0.3981901
    # ordered pairs count it twice, times lambda / 2: lambda * 0.3981901
    # L = (1.1802563 + 10 * 0.3981901) / 4 = 1.2905393
    image = torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]])
    p1 = [[0.8, 0.6], [0.8, 0.2]]
    t = [[1, 1], [1, 0]]
    nll = -(3 * ln(0.8) + ln(0.6))
    smooth = 0.16 + 1.76 * math.exp(-2)
    assert both_forms("seg", p1, t, image) == pytest.approx((nll + 10 * smooth) / 4, rel=1e-6)
    loss = create_loss("seg", lam=50)
    loss(logits(p1), tgt(t), image)
    assert loss.last_terms["seg_nll"] == pytest.approx(nll / 4, rel=1e-9)
    assert loss.last_terms["seg_smooth"] == pytest.approx(50 * smooth / 4, rel=1e-6)


def test_seg_by_hand_3x3_border_pixel_constant_image():
    # constant image: every distance 0, sigma = 0 -> all weights 1 (documented convention).
    # p1 = 0.9 everywhere except the corner (0,0) with 0.5; all water.
    # The corner has 3 neighbours inside the image: 3 pairs with 2 * 0.4^2 = 0.32 -> 0.96;
    # no other pair differs. nll = -(8 ln .9 + ln .5) = 1.5360313
    # L = (1.5360313 + 10 * 0.96) / 9 = 1.2373368   (zero padding would add phantom pairs)
    p1 = [[0.5, 0.9, 0.9], [0.9, 0.9, 0.9], [0.9, 0.9, 0.9]]
    t = [[1] * 3] * 3
    image = torch.full((1, 4, 3, 3), 0.3)
    expected = (-(8 * ln(0.9) + ln(0.5)) + 10 * 0.96) / 9
    assert both_forms("seg", p1, t, image) == pytest.approx(expected, rel=1e-6)


def test_seg_ignored_pixel_is_no_neighbour():
    # 1 x 3 row a b c with b ignored: a and c are 2 apart, so no pair is left;
    # L = -(ln .7 + ln .6) / 2 whatever p_b and x_b are
    t = [[1, 255, 0]]
    image = torch.tensor([[[[0.0, 5.0, 1.0]]]])
    for pb in (0.01, 0.99):
        p1 = [[0.7, pb, 0.4]]
        assert both_forms("seg", p1, t, image) == pytest.approx(-(ln(0.7) + ln(0.6)) / 2)


def test_seg_sigma_is_per_image():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 4, 4, generator=g)
    image[1] *= 10  # second image: 10x the contrast
    out = torch.randn(2, 2, 4, 4, generator=g)
    t = (torch.rand(2, 4, 4, generator=g) > 0.5).long()
    loss = create_loss("seg")
    both = float(loss(out, t, image))
    # per-image sigma: the batch loss is the pixel-weighted mean of each image's own loss
    singles = [float(loss(out[i : i + 1], t[i : i + 1], image[i : i + 1])) for i in range(2)]
    assert both == pytest.approx(sum(singles) / 2, rel=1e-6)
    # and scaling an image's colours does not change its loss (sigma scales with them)
    assert singles[1] == pytest.approx(float(loss(out[1:], t[1:], image[1:] / 10)), rel=1e-5)


# ---------------------------------------------------------------------------- L_Edge (5)


def test_edge_by_hand_3x3():
    # target        p1 (water prob)
    #  1 0 0         a .9  b .2  c .1
    #  1 0 0         d .8  e .3  f .1
    #  1 0 0         g .9  h .2  i .1
    # edge pixels: column 0 (water next to land) and column 1 (land next to water);
    # column 2 only touches land -> non-edge.
    # water edge i: ln p1_i + mean over land neighbours j of ln(1 - p1_j)
    #   a: nb b, e            ln .9 + (ln .8 + ln .7) / 2
    #   d: nb b, e, h         ln .8 + (ln .8 + ln .7 + ln .8) / 3
    #   g: nb e, h            ln .9 + (ln .7 + ln .8) / 2
    # land edge i: ln(1 - p1_i) + mean over water neighbours j of ln p1_j
    #   b: nb a, d            ln .8 + (ln .9 + ln .8) / 2
    #   e: nb a, d, g         ln .7 + (ln .9 + ln .8 + ln .9) / 3
    #   h: nb d, g            ln .8 + (ln .8 + ln .9) / 2
    # non-edge: ln(1 - mean |p1_i - p1_j|) over the neighbours inside the image
    #   c: b, e, f -> (.1 + .2 + 0) / 3 = .1       -> ln .9
    #   f: b, c, e, h, i -> (.1 + 0 + .2 + .1 + 0) / 5 = .08 -> ln .92
    #   i: e, f, h -> (.2 + 0 + .1) / 3 = .1       -> ln .9
    # L = -(sum) / 9 = 0.3168364
    p1 = [[0.9, 0.2, 0.1], [0.8, 0.3, 0.1], [0.9, 0.2, 0.1]]
    t = [[1, 0, 0]] * 3
    s = (
        ln(0.9) + (ln(0.8) + ln(0.7)) / 2
        + ln(0.8) + (ln(0.8) + ln(0.7) + ln(0.8)) / 3
        + ln(0.9) + (ln(0.7) + ln(0.8)) / 2
        + ln(0.8) + (ln(0.9) + ln(0.8)) / 2
        + ln(0.7) + (ln(0.9) + ln(0.8) + ln(0.9)) / 3
        + ln(0.8) + (ln(0.8) + ln(0.9)) / 2
        + ln(0.9) + ln(0.92) + ln(0.9)
    )  # fmt: skip
    assert both_forms("edge", p1, t) == pytest.approx(-s / 9, rel=1e-6)
    assert -s / 9 == pytest.approx(0.3168364, rel=1e-6)


def test_edge_border_makes_no_false_edge():
    # all water, uniform p1 = 0.9: no edge, every |dp| = 0 -> L = -ln(1 - 0) = 0 exactly.
    # (zero-padding the probabilities would give border pixels |0.9 - 0| terms.)
    assert both_forms("edge", [[0.9] * 4] * 4, [[1] * 4] * 4) == 0.0


def test_edge_ignored_pixel_is_no_neighbour():
    # 2 x 2: a=(0,0) water, b=(0,1) land, bottom row ignored.
    # a: edge with SN = {b}: ln p1_a + ln(1 - p1_b); b: edge with SN = {a}: ln(1 - p1_b) + ln p1_a
    # L = -2 (ln .7 + ln .6) / 2 = -(ln .7 + ln .6), whatever the ignored pixels predict
    t = [[1, 0], [255, 255]]
    for q in (0.01, 0.99):
        p1 = [[0.7, 0.4], [q, 1 - q]]
        assert both_forms("edge", p1, t) == pytest.approx(-(ln(0.7) + ln(0.6)), rel=1e-9)


# ---------------------------------------------------------------------------- pure land


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ce", -ln(0.8)),  # every pixel: -ln p0 = -ln .8
        ("sd", 1 - 1e-5 / (9 * 0.2 + 1e-5)),  # sum y = 0, sum p = 9 * .2
        ("seg", -ln(0.8)),  # uniform p: smoothness term 0
        ("edge", 0.0),  # no edge, uniform p: -ln(1 - 0)
        ("ce+sd", -ln(0.8) + 0.7 * (1 - 1e-5 / (1.8 + 1e-5))),
        ("seg+edge", -ln(0.8)),
    ],
)
def test_pure_land_image_by_hand(name, expected):
    # 3 x 3 pure-land image, p1 = 0.2 everywhere
    image = torch.rand(1, 4, 3, 3)
    assert both_forms(name, [[0.2] * 3] * 3, [[0] * 3] * 3, image) == pytest.approx(
        expected, rel=1e-6
    )


# ---------------------------------------------------------------------------- behaviour

T_4x4 = [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 255]]


def _logits_for(target: torch.Tensor, scale: float, water_where_target_is: int) -> torch.Tensor:
    """Logits (B, 2, H, W): the water channel is +scale where target == water_where..."""
    water = torch.where(target == water_where_target_is, scale, -scale).double()
    return torch.stack([torch.zeros_like(water), water], dim=1)


def _heads(name, out):
    return (out, out.clone()) if create_loss(name).num_heads == 2 else out


@pytest.mark.parametrize("name", ALL)
def test_class_1_is_water_perfect_beats_wrong(name):
    t = tgt(T_4x4)
    image = torch.rand(1, 4, 4, 4, dtype=torch.float64)
    loss = create_loss(name)
    right = float(loss(_heads(name, _logits_for(t, 4.0, 1)), t, image))  # water where water
    wrong = float(loss(_heads(name, _logits_for(t, 4.0, 0)), t, image))  # water where land
    assert right < wrong
    assert set(loss.last_terms) >= {"total"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("which", [1, 0])
def test_finite_gradients_at_saturated_probabilities(name, which):
    # logits +-1e4: softmax probabilities are exactly 0 and 1 in float32
    t = tgt(T_4x4)
    out = _logits_for(t, 1e4, which).float().requires_grad_(True)
    assert out.softmax(1).eq(1).any()
    loss = create_loss(name)
    value = loss(_heads(name, out), t, torch.rand(1, 4, 4, 4))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(out.grad).all()
    # probabilities given directly, exactly 0 and 1: clamped before the log
    p = out.detach().softmax(1).requires_grad_(True)
    value = create_loss(name, from_logits=False)(_heads(name, p), t, torch.rand(1, 4, 4, 4))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_ignored_pixels_change_nothing(name):
    g = torch.Generator().manual_seed(0)
    t = tgt(T_4x4)
    t[0, 1, 1] = 255
    image = torch.rand(1, 3, 4, 4, generator=g)
    out = torch.randn(1, 2, 4, 4, generator=g)
    loss = create_loss(name)
    base = float(loss(_heads(name, out), t, image))
    out2, image2 = out.clone(), image.clone()
    ignored = t[0] == 255
    out2[0, :, ignored] = torch.tensor([[-9.0], [9.0]])  # anything at ignored pixels
    image2[0, :, ignored] = 100.0
    assert float(loss(_heads(name, out2), t, image2)) == pytest.approx(base, rel=1e-6)
    # every pixel ignored: 0, still differentiable
    out3 = out.clone().requires_grad_(True)
    value = loss(_heads(name, out3), torch.full_like(t, 255), image)
    value.backward()
    assert float(value.detach()) == 0.0 and torch.isfinite(out3.grad).all()


@pytest.mark.parametrize(
    "name, first, second, weights",
    [("ce+sd", "ce", "sd", (1.0, 0.7)), ("seg+edge", "seg", "edge", (1.0, 1.0))],
)
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_sum_losses_apply_each_term_to_its_own_head(name, first, second, weights):
    g = torch.Generator().manual_seed(2)
    t = tgt(T_4x4)
    image = torch.rand(1, 4, 4, 4, generator=g)
    h0 = torch.randn(1, 2, 4, 4, generator=g, requires_grad=True)
    h1 = torch.randn(1, 2, 4, 4, generator=g, requires_grad=True)
    loss = create_loss(name)
    value = loss((h0, h1), t, image)
    t1 = create_loss(first)(h0, t, image)
    t2 = create_loss(second)(h1, t, image)
    assert value.item() == pytest.approx(weights[0] * t1.item() + weights[1] * t2.item(), rel=1e-6)
    assert loss.last_terms[first] == pytest.approx(t1.item(), rel=1e-6)
    assert loss.last_terms[second] == pytest.approx(t2.item(), rel=1e-6)
    assert loss.last_terms["total"] == pytest.approx(value.item(), rel=1e-6)
    swapped = float(create_loss(name)((h1, h0), t, image))
    assert swapped != pytest.approx(value.item(), rel=1e-3)
    # gradients: head 0 gets only the first term's, head 1 only the second's
    value.backward()
    g0 = torch.autograd.grad(weights[0] * create_loss(first)(h0, t, image), h0)[0]
    g1 = torch.autograd.grad(weights[1] * create_loss(second)(h1, t, image), h1)[0]
    assert torch.allclose(h0.grad, g0, atol=1e-6) and torch.allclose(h1.grad, g1, atol=1e-6)
    # a single tensor gets both terms
    single = float(create_loss(name)(h0, t, image))
    both = weights[0] * float(create_loss(first)(h0, t, image)) + weights[1] * float(
        create_loss(second)(h0, t, image)
    )
    assert single == pytest.approx(both, rel=1e-6)


def test_pair_slices_line_up_neighbours():
    x = torch.arange(12).reshape(3, 4)
    si, sj = pair_slices(1, -1)  # j = one row down, one column left
    assert x[si].tolist() == [[1, 2, 3], [5, 6, 7]]
    assert x[sj].tolist() == [[4, 5, 6], [8, 9, 10]]


def test_mixed_precision_outputs_are_summed_in_float32():
    t = torch.zeros(1, 64, 64, dtype=torch.long)
    out = torch.zeros(1, 2, 64, 64, dtype=torch.float16)
    out[:, 1] = 20.0  # every pixel confidently wrong
    value = create_loss("seg")(out, t, torch.rand(1, 4, 64, 64))
    assert value.dtype == torch.float32 and torch.isfinite(value)
