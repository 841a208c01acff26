"""The receptive window: steps run the network only on the input pixels the objective's cells see."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnscope.layers import Capture, capture
from cnnscope.models import load_model
from cnnscope.models.folding import for_optimisation
from cnnscope.preimage import InnerProduct, SolverConfig, solve
from cnnscope.preimage.objectives import TV, Context, unit_direction
from cnnscope.preimage.param import make_param
from cnnscope.preimage.robustness import parse_transforms
from cnnscope.preimage.window import plan_window

from . import external_zoo


def neuron(model, layer, channels=(3,), y=None, x=None):
    shape = capture(model, torch.zeros(1, 3, 224, 224), [layer])[layer].shape[1:]
    return InnerProduct(layer, unit_direction(shape, list(channels), "neuron", y, x))


def window_of(model, objective, size=(224, 224)):
    with Capture(for_optimisation(model, objective.layers), objective.layers) as phi:
        return plan_window(model, phi, objective, size)


def test_the_window_covers_the_read_cells_receptive_field_on_the_stride_grid(lite0):
    # Lite0's stem: 3x3 stride 2 from pixel 0, so the centre cell (56, 56) sees pixels 112..114
    w = window_of(lite0, neuron(lite0, "stem"))
    assert (w.top, w.left, w.height, w.width) == (112, 112, 4, 4)
    assert w.cells == {"stem": (56, 56, 2, 2)}
    # stage2 (stride 4, cell i sees -6 + 4i .. 12 + 4i): cell 28 -> 106..124 -> [104, 128)
    w = window_of(lite0, neuron(lite0, "stage2"))
    assert (w.top, w.height) == (104, 24) and w.cells["stage2"][:2] == (26, 26)
    # a corner neuron: the window stops at the picture's edge
    w = window_of(lite0, neuron(lite0, "stage2", y=0, x=0))
    assert (w.top, w.left) == (0, 0) and w.height == 16


def test_whole_maps_deep_layers_and_stacked_cells_run_on_the_whole_input(lite0):
    shape = capture(lite0, torch.zeros(1, 3, 224, 224), ["stem"])["stem"].shape[1:]
    channel_mean = InnerProduct("stem", unit_direction(shape, [3], "channel"))
    assert window_of(lite0, channel_mean) is None  # reads every cell
    assert window_of(lite0, neuron(lite0, "stage6")) is None  # the receptive field covers the input
    both = neuron(lite0, "stem", y=0, x=0) + neuron(lite0, "stem", y=111, x=111)
    assert window_of(lite0, both) is None  # the union of two corners is the whole input
    with_prior = neuron(lite0, "stem") + 0.1 * TV()
    assert window_of(lite0, with_prior).cells == {"stem": (56, 56, 2, 2)}  # priors read the picture, not maps


@pytest.mark.parametrize("layer", ["stem", "stage2", "stage4"])
def test_the_windowed_step_has_the_whole_inputs_energy_and_gradient(lite0, layer):
    objective = neuron(lite0, layer, channels=(3, 5))
    pipeline = parse_transforms("standard", 128)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (lite0.preprocess.mean, lite0.preprocess.std))
    picture = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with Capture(for_optimisation(lite0, [layer]), [layer]) as phi:
        window = plan_window(lite0, phi, objective, (224, 224))
        assert window is not None and window.height * window.width < 0.6 * 224 * 224
        results = []
        for box, obj in ((None, objective), (window.box, window.objective)):
            seen = pipeline(picture, torch.Generator().manual_seed(5), (224, 224), window=box)
            energy = obj(Context(None, phi((seen - mean) / std)))
            results.append((energy.detach(), torch.autograd.grad(energy.sum(), picture)[0]))
    (e_whole, g_whole), (e_window, g_window) = results
    # the window's pixels are the whole canvas's, to the bit (its grid is a slice of the whole grid)
    assert torch.allclose(e_whole, e_window, rtol=1e-6, atol=1e-6)
    assert (g_whole - g_window).norm() / g_whole.norm() < 1e-5
    assert g_whole.abs().sum() > 0


def test_solve_with_and_without_the_window_gives_the_same_picture(lite0):
    # SGD steps along the gradient (Adam's first steps follow each coordinate's sign and part float-equal runs)
    objective = neuron(lite0, "stage2")
    results = {}
    for on in (True, False):
        cfg = SolverConfig(iters=12, optimizer="sgd", lr=0.05, transforms="standard", net_size=224, progress=False,
                           receptive_window=on)
        param = make_param("fourier", 1, 128, seed=0, mean=lite0.preprocess.mean)
        results[on] = solve(lite0, objective, param, cfg)
    assert (results[True].images - results[False].images).abs().max() < 1e-3
    assert results[True].energy == pytest.approx(results[False].energy, rel=1e-3)
    assert "receptive_window" not in cfg.to_dict()  # a speed setting: records and resumed jobs do not see it


class SizeDependent(nn.Module):
    """Convolutions whose output is scaled by the input's width: invisible to the receptive-field geometry."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.conv1(x)) * (x.shape[-1] / 224)
        return self.conv2(x)


def test_a_window_that_changes_the_read_cells_is_refused():
    model = load_model(SizeDependent())
    objective = neuron(model, "conv2")
    assert window_of(model, objective) is None  # the check on a random input sees the scaled cells
    plain = load_model(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1)))
    assert window_of(plain, neuron(plain, "2")) is not None


def test_a_window_objective_reads_the_shifted_cells():
    direction = torch.zeros(2, 4, 10, 10)
    direction[0, 1, 4, 5] = 1.0
    direction[1, 2, 6, 3] = 2.0
    term = InnerProduct("l", direction)
    assert term.cells_read() == {"l": (4, 7, 3, 6)}
    small = term.windowed({"l": (3, 2, 5, 6)})
    f = torch.randn(2, 4, 10, 10)
    assert torch.allclose(small.value(Context(None, {"l": f[:, :, 3:8, 2:8]})), term.value(Context(None, {"l": f})))
    assert small.cells_read() == {"l": (1, 4, 1, 4)} and term.cells_read() == {"l": (4, 7, 3, 6)}
    with pytest.raises(ValueError):
        term.windowed({"l": (6, 2, 5, 6)})  # a window map that leaves the layer's map


def test_external_cnns_window_where_the_geometry_allows_and_not_through_squeeze_excitation():
    pytest.importorskip("transformers")  # the test-only zoo: HF's CNNs with random weights
    model = load_model(external_zoo.convnext())
    objective = neuron(model, "convnext.encoder.stages.0", channels=(0,))
    with Capture(for_optimisation(model, objective.layers), objective.layers) as phi:
        window = plan_window(model, phi, objective, (224, 224))
        assert window is not None and window.height < 64  # ConvNeXt's 7x7 depthwise blocks after a 4x4 stem
        x = torch.randn(1, 3, 224, 224, requires_grad=True)
        g_whole = torch.autograd.grad(objective(Context(None, phi(x))).sum(), x)[0]
        g_window = torch.autograd.grad(window.objective(Context(None, phi(window.crop(x)))).sum(), x)[0]
    assert g_whole.abs().sum() > 0 and (g_whole - g_window).norm() / g_whole.norm() < 1e-5
    se = load_model(external_zoo.efficientnet())
    assert window_of(se, neuron(se, "efficientnet.encoder.blocks.3.squeeze_excite")) is None  # a global pool
