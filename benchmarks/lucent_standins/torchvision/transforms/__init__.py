"""Stand-in for the benchmark only: the one torchvision class Lucent uses (torchvision does not import here)."""
import torch


class Normalize(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def forward(self, x):
        return (x - self.mean.to(x)) / self.std.to(x)
