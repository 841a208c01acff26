import os
import re
import struct
import sys
import zlib
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two test processes: one thread each (and their
    os.environ["OMP_NUM_THREADS"] = "1"  # children), or four threads fight over two cores

import pytest  # noqa: E402
import torch  # noqa: E402

from cnnscope.models import load_model  # noqa: E402


@pytest.fixture(scope="session")
def lite0():
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def alexnet():
    return load_model("alexnet", random_weights=True)


def png_with_header_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixel data is not there: opening must refuse it first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.fixture
def user_model_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_net.py"
    path.write_text(
        "import torch, torch.nn as nn, torch.nn.functional as F\n"
        "class Tiny(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv1 = nn.Conv2d(3, 8, 5, stride=2, padding=2)\n"
        "        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)\n"
        "        self.fc = nn.Linear(16, 10)\n"
        "    def forward(self, x):\n"
        "        x = F.relu(self.conv1(x))\n"
        "        x = F.max_pool2d(x, 2)\n"
        "        x = F.relu(self.conv2(x))\n"
        "        return self.fc(x.mean((2, 3)))\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return Tiny()\n"
        "def not_a_module():\n"
        "    return 42\n"
    )
    return path


PYTHON = sys.executable
PROGRESS_LINE = re.compile(r"^[\w./ -]+: \d+/\d+ \w+s done \(")  # `cnnscope.progress`'s plain lines, off a terminal


def messages(stderr: str) -> list[str]:
    """The lines of a run's stderr that are not progress lines (errors, notes, the interrupt message)."""
    return [line for line in stderr.strip().splitlines() if not PROGRESS_LINE.match(line)]


def pytest_configure(config):
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, torch.get_num_threads()))
