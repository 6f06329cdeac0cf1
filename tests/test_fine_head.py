"""The stride-4 keypoint head (``fine_grid``): identity when new, soft-argmax onto the best
cell, a layer of its own in the outputs, exported to ONNX like the rest of the step."""

import torch

from pavenet.model.fine import FineKeypointHead
from pavenet.model.pavenet import build_model
from tests.test_model import TINY

FINE = TINY.override(fine_grid=3)


def test_a_new_head_is_the_identity_and_adds_one_refinement_layer():
    torch.manual_seed(0)
    model = build_model(FINE).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64) * 255)
    assert out["refine_keypoints"].shape[0] == FINE.refine_layers + 1
    assert torch.allclose(out["refine_keypoints"][-1], out["refine_keypoints"][-2], atol=1e-6)
    assert torch.allclose(out["refine_sigmas"][-1], out["refine_sigmas"][-2], atol=1e-5)


def test_the_keypoint_moves_to_the_cell_whose_features_win():
    """One bright stride-4 cell right of the keypoint, scored by its feature: the keypoint lands on
    that cell's centre (cells centred where the strided convolutions centre them)."""
    cfg = FINE
    head = FineKeypointHead(cfg, fine_channels=1)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.fine_proj.weight.fill_(1.0)
        head.logit.weight.fill_(1.0)  # logit = 64 * feature
    fine = torch.zeros(1, 1, 16, 16)
    fine[0, 0, 5, 7] = 1.0  # row 5, column 7 of the stride-4 map
    kp = torch.tensor([(4 * 6 + 0.5) / 64, (4 * 5 + 0.5) / 64]).view(1, 1, 1, 2)  # centre of column 6
    moved, sigma = head(torch.zeros(1, 1, 1, 32), kp, torch.full((1, 1, 1, 2), 0.1), fine, torch.zeros(1, 32, 8, 8))
    assert torch.allclose(moved, kp + torch.tensor([4 / 64, 0.0]), atol=1e-4)
    assert torch.allclose(sigma, torch.full_like(sigma, 0.1), atol=1e-5)


def test_a_model_with_the_head_exports_and_matches_onnx(tmp_path):
    from export.onnx_export import example_inputs, export_onnx
    from export.verify import verify_onnx
    from pavenet.model.step import StreamingStep

    torch.manual_seed(0)
    model = build_model(FINE).eval()
    torch.nn.init.normal_(model.refiner.fine.logit.weight, std=1.0)  # a trained head moves keypoints
    with torch.no_grad():
        out = StreamingStep(model)(*example_inputs(FINE))
        plain = build_model(TINY).eval()
        plain.load_state_dict(model.state_dict(), strict=False)
        before = StreamingStep(plain)(*example_inputs(FINE))
    assert not torch.allclose(out[1], before[1], atol=1e-5), "the head moved keypoints"
    errors = verify_onnx(model, export_onnx(model, tmp_path / "fine.onnx"))
    assert errors["keypoints"] <= 1e-4
