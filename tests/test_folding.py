"""BatchNorm folded into its convolution for the solver's passes (`models.folding`): same layers, same values,
never a folded convolution's own output, never stale weights, never the original's hooks."""

import torch
from torch import nn

from cnnscope.layers import capture
from cnnscope.models import load_model
from cnnscope.models.folding import batchnorm_pairs, for_optimisation
from cnnscope.preimage.solver import SolverConfig
from cnnscope.preimage.tasks import maximize
from cnnscope.targets import Target


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) <= 1e-4 * float(a.abs().max())


def test_the_folded_lite_network_gives_every_stage_the_same_values(lite0):
    view = for_optimisation(lite0, ["stage6"])
    assert view.net is not lite0.net and view.aliases == lite0.aliases
    assert sum(isinstance(m, nn.BatchNorm2d) for m in view.net.modules()) == 0  # all 49 of Lite0's folded
    assert len(batchnorm_pairs(lite0.net)) == sum(isinstance(m, nn.BatchNorm2d) for m in lite0.net.modules())
    x = torch.rand(2, 3, 96, 96) * 255 - 127
    for layer in ("stem", "stage2", "_blocks.5._bn1", "stage6", "head", "logits"):
        assert _close(capture(lite0, x, [layer])[layer], capture(view, x, [layer])[layer]), layer
    assert all(not p.requires_grad for p in view.net.parameters())
    assert view.net._blocks[4]._expand_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert for_optimisation(lite0, ["stage2"]).net is view.net  # made once


def test_a_solve_reading_a_folded_convolution_runs_on_the_network_as_it_is(lite0):
    assert for_optimisation(lite0, ["_blocks.3._project_conv"]) is lite0
    assert for_optimisation(lite0, ["stage2", "_conv_stem"]) is lite0
    assert for_optimisation(lite0, ["_blocks.3._bn2"]) is not lite0  # a folded BatchNorm's output is unchanged


def test_changed_weights_are_folded_again_and_hooks_stay_on_the_original():
    model = load_model("efficientnet_lite0", random_weights=True)
    handle = model.net._blocks[1].register_forward_hook(lambda *a: None)
    first = for_optimisation(model, ["stage3"]).net
    assert not any(m._forward_hooks for m in first.modules()) and model.net._blocks[1]._forward_hooks
    handle.remove()
    with torch.no_grad():
        model.net._blocks[2]._bn1.running_var.mul_(4.0)  # in place: the folded copy is stale
    again = for_optimisation(model, ["stage3"])
    assert again.net is not first
    x = torch.rand(1, 3, 64, 64) * 255 - 127
    assert _close(capture(model, x, ["stage3"])["stage3"], capture(again, x, ["stage3"])["stage3"])


def test_a_user_networks_sequential_conv_bn_is_folded_and_nothing_else():
    class Standardised(nn.Conv2d):  # transforms its weights in forward: folding would be wrong
        def forward(self, x):
            w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True))
            return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)

    class Custom(nn.Sequential):  # a Sequential that does not only chain its children
        def forward(self, x):
            return self[1](self[0](x)) + self[0](x)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Sequential(Standardised(8, 8, 3, padding=1), nn.BatchNorm2d(8)),
                        Custom(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)), nn.ReLU())
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    model = load_model(net)
    assert batchnorm_pairs(model.net) == [("0", "1")]
    view = for_optimisation(model, ["5"])
    x = torch.randn(2, 3, 16, 16)
    assert _close(capture(model, x, ["5"])["5"], capture(view, x, ["5"])["5"])


def test_a_visualisation_on_the_folded_network_matches_the_plain_one(lite0, monkeypatch):
    import cnnscope.preimage.solver as solver

    def run():
        return maximize(lite0, "stage4", [Target("neuron", 5)], size=96, recipe="mv",
                        config=SolverConfig(iters=6, progress=False))[0]

    folded_for = solver.for_optimisation
    used = []
    monkeypatch.setattr(solver, "for_optimisation", lambda model, layers: used.append(1) or folded_for(model, layers))
    folded = run()
    monkeypatch.setattr(solver, "for_optimisation", lambda model, layers: model)
    plain = run()
    # M&V's SGD steps along the gradient, so float-precision differences stay small (Adam's first steps follow the
    # sign of each coordinate's gradient: near-zero coordinates flip between two float-equal networks and the
    # pictures part ways, as they would between two machines)
    assert used and float((folded.images - plain.images).abs().mean()) < 2e-4
    assert abs(folded.energy[0] - plain.energy[0]) <= 2e-3 * abs(plain.energy[0])


def test_the_gradient_through_the_folded_network_is_the_same(lite0):
    x = torch.rand(1, 3, 96, 96) * 255 - 127
    grads = []
    for model in (lite0, for_optimisation(lite0, ["stage4"])):
        xi = x.clone().requires_grad_(True)
        capture(model, xi, ["stage4"])["stage4"][:, 5].sum().backward()
        grads.append(xi.grad)
    assert _close(grads[0], grads[1])
