import pytest
import torch

from pavenet.errors import PavenetError
from pavenet.model.attention import ms_deform_attn
from pavenet.model.backbone import ResNet
from pavenet.model.config import ModelConfig
from pavenet.model.pavenet import build_model

TINY = ModelConfig(name="tiny", input_width=64, input_height=64, backbone_width=0.25, d_model=32, num_heads=2,
                   ffn_dim=64, encoder_layers=1, decoder_layers=2, num_queries=8)


def _bilinear(value, x, y):
    """Reference bilinear sample of [C, H, W] at pixel coordinates (zeros outside)."""
    c, h, w = value.shape
    x0, y0 = int(torch.floor(x)), int(torch.floor(y))
    out = torch.zeros(c, dtype=value.dtype)
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        wgt = (1 - abs(x - xi)) * (1 - abs(y - yi))
        if 0 <= xi < w and 0 <= yi < h:
            out += wgt * value[:, yi, xi]
    return out


def test_deformable_attention_equals_slow_reference():
    torch.manual_seed(0)
    b, q, m, p, dh = 2, 3, 2, 3, 4
    shapes = [(6, 8), (3, 4)]
    values = [torch.randn(b * m, dh, h, w, dtype=torch.float64) for h, w in shapes]
    loc = torch.rand(b, q, m, len(shapes), p, 2, dtype=torch.float64) * 1.2 - 0.1
    wts = torch.rand(b, q, m, len(shapes), p, dtype=torch.float64)
    got = ms_deform_attn(values, loc, wts)
    want = torch.zeros(b, q, m * dh, dtype=torch.float64)
    for bi in range(b):
        for qi in range(q):
            for mi in range(m):
                acc = torch.zeros(dh, dtype=torch.float64)
                for li, (h, w) in enumerate(shapes):
                    for pi in range(p):
                        x = loc[bi, qi, mi, li, pi, 0] * w - 0.5  # align_corners=False
                        y = loc[bi, qi, mi, li, pi, 1] * h - 0.5
                        acc += wts[bi, qi, mi, li, pi] * _bilinear(values[li][bi * m + mi], x, y)
                want[bi, qi, mi * dh:(mi + 1) * dh] = acc
    assert torch.allclose(got, want, atol=1e-10)


def test_outputs_and_track_rows():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    out0 = model(x)
    assert out0["scores"].shape == (2, 2, 8) and out0["keypoints"].shape == (2, 2, 8, 17, 2)
    assert out0["hidden"].shape == (2, 8, 32) and out0["enc_scores"].shape == (2, 20)
    tq, tk = torch.randn(2, 3, 32), torch.rand(2, 3, 17, 2)
    out3 = model(x, tq, tk)
    assert out3["scores"].shape == (2, 2, 11)
    assert ((out3["keypoints"] >= 0) & (out3["keypoints"] <= 1)).all()
    empty = model(x, torch.zeros(2, 0, 32), torch.zeros(2, 0, 17, 2))
    assert torch.allclose(empty["scores"], out0["scores"], atol=1e-5), "N = 0 track queries is a no-op"
    # Permuting the track queries permutes their answers (rows 0..N-1 answer them in order).
    perm = torch.tensor([2, 0, 1])
    out_p = model(x, tq[:, perm], tk[:, perm])
    assert torch.allclose(out_p["keypoints"][:, :, :3], out3["keypoints"][:, :, perm], atol=1e-5)


def test_resnet_uses_torchvision_names(tmp_path):
    net = ResNet("resnet18")
    keys = set(net.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer4.1.bn2.weight"} <= keys
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, tmp_path / "r18.pth")
    other = ResNet("resnet18", frozen_bn=True)
    other.load_pretrained(str(tmp_path / "r18.pth"))
    assert torch.equal(other.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert [c.shape[1] for c in other(torch.zeros(1, 3, 64, 64))] == [128, 256, 512]


def test_spread_offsets_puts_each_heads_points_on_a_ray():
    from pavenet.model.attention import WindowDeformableAttention, spread_offsets

    attn = WindowDeformableAttention(8, heads=4, levels=2, frames=2, anchors=3, points=2)
    spread_offsets(attn, 0.4)
    bias = attn.sampling_offsets.bias.view(4, 2, 2, 3, 2, 2)  # heads, frames, levels, anchors, points, xy
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # right, down, left, up
    for m in range(4):
        for p, dist in enumerate((0.2, 0.4)):
            assert torch.allclose(bias[m, :, :, :, p], (dist * expected[m]).expand(2, 2, 3, 2), atol=1e-6)


def test_a_model_with_side_heads_exports_and_matches_onnx(tmp_path):
    """Side heads swap pairs inside the step: the exported graph shows the same (swapped) poses."""
    from export.onnx_export import example_inputs, export_onnx
    from export.verify import verify_onnx

    torch.manual_seed(0)
    cfg = TINY.override(side_heads=True)
    model = build_model(cfg).eval()
    for head in model.decoder.heads:  # a trained head: confident both ways
        torch.nn.init.normal_(head.side.linear.weight, std=3.0)
        torch.nn.init.zeros_(head.side.linear.bias)
    with torch.no_grad():
        logits = model(example_inputs(cfg)[0].permute(0, 3, 1, 2).float())["side_logits"]
    assert (logits > 0).any() and (logits < 0).any()
    errors = verify_onnx(model, export_onnx(model, tmp_path / "side.onnx"))
    assert errors["keypoints"] <= 1e-4


def test_keypoint_confidence_is_relative_to_the_pose_size_for_whole_image_sigmas():
    """The same whole-image sigma is a small error on a large person and a large one on a small
    person: the confidence of a model with whole-image sigmas divides by the pose's size; a model
    with size-relative sigmas keeps 1 - sigma."""
    from pavenet.model.step import keypoint_confidence

    small = torch.rand(1, 17, 2) * 0.1 + 0.4  # a pose 0.1 of the image tall
    large = (small - 0.4) * 5 + 0.2  # the same pose 0.5 tall
    sigma = torch.full((1, 17, 2), 0.02)
    c_small, c_large = keypoint_confidence(small, sigma, False), keypoint_confidence(large, sigma, False)
    assert c_small.shape == (1, 17) and bool((c_large > c_small).all())
    assert torch.allclose(keypoint_confidence(small, sigma, True), torch.full((1, 17), 0.98))
    assert bool(((c_small > 0) & (c_small <= 1)).all())


def test_stride8_blocks_grow_a_trained_model_without_changing_its_output(tmp_path):
    """Residual blocks added at stride 8 start as the identity: a checkpoint with one block,
    loaded with ``init_partial`` into a model with three, gives the same outputs; the new
    blocks are real parameters that training then moves."""
    from pavenet.model.checkpoint import save_checkpoint
    from training.config import TrainConfig
    from training.loop.checkpoints import load_weights
    from training.loop.trainer import build_criterion

    torch.manual_seed(0)
    small = build_model(TINY)
    with torch.no_grad():  # trained-looking BatchNorm statistics, not the defaults
        for m in small.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "small.pt"
    crit = build_criterion(TINY, TrainConfig())
    save_checkpoint(path, {"model_config": TINY.to_dict(), "layout": TINY.layout, "model": small.state_dict(),
                           "criterion": crit.state_dict()})
    grown_cfg = TINY.override(stride8_blocks=3)
    grown = build_model(grown_cfg)
    message = load_weights(path, grown, build_criterion(grown_cfg, TrainConfig()), grown_cfg, partial=True)
    assert "initialised" in message
    assert len(grown.backbone.stage3) == 4 and len(small.backbone.stage3) == 2
    x = torch.rand(2, 3, 64, 64) * 255
    small.eval(), grown.eval()
    with torch.no_grad():
        a, b = small(x), grown(x)
    for key in ("scores", "keypoints", "hidden"):
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    with pytest.raises(PavenetError, match="stride8_blocks"):
        TINY.override(stride8_blocks=0)
