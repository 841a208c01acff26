"""AlexNet and VGG16 whose state-dict keys match torchvision's, so torchvision checkpoints load strictly
without torchvision. Layer aliases give the names used in the papers (conv1, pool5, fc8, conv5_3…)."""

from __future__ import annotations

import torch
from torch import nn


class AlexNet(nn.Module):
    """The torchvision ("one weird trick") AlexNet: 64-192-384-256-256 channels."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def layer_aliases(self) -> dict[str, str]:
        names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3",
                 "conv4", "relu4", "conv5", "relu5", "pool5"]
        aliases = {n: f"features.{i}" for i, n in enumerate(names)}
        head = ["drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]
        aliases.update({n: f"classifier.{i}" for i, n in enumerate(head)})
        aliases["logits"] = "classifier.6"
        return aliases

    def depth_layers(self) -> list[str]:
        return ["relu1", "relu2", "relu3", "relu4", "relu5", "pool5", "relu6", "relu7", "fc8"]

    def style_layers(self) -> list[str]:
        return ["relu1", "relu2", "relu3", "relu4", "relu5"]

    def content_layer(self) -> str:
        return "relu4"


VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16(nn.Module):
    """VGG-16 (configuration D, no batch norm) in torchvision's layout."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def layer_aliases(self) -> dict[str, str]:
        aliases: dict[str, str] = {}
        block, conv, i = 1, 1, 0
        for v in VGG16_CFG:
            if v == "M":
                aliases[f"pool{block}"] = f"features.{i}"
                block, conv, i = block + 1, 1, i + 1
            else:
                aliases[f"conv{block}_{conv}"] = f"features.{i}"
                aliases[f"relu{block}_{conv}"] = f"features.{i + 1}"
                conv, i = conv + 1, i + 2
        head = ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
        aliases.update({n: f"classifier.{i}" for i, n in enumerate(head)})
        aliases["logits"] = "classifier.6"
        return aliases

    def depth_layers(self) -> list[str]:
        return ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "pool5", "relu6", "relu7", "fc8"]

    def style_layers(self) -> list[str]:
        return ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]  # Gatys et al.

    def content_layer(self) -> str:
        return "relu4_2"


# torchvision's published checkpoint file names (found in the torch hub cache if the user has them)
HUB_FILES = {"alexnet": "alexnet-owt-7be5be79.pth", "vgg16": "vgg16-397923af.pth"}
