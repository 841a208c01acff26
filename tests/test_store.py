"""Files out: atomic, and the same content gives the same bytes in every process."""

import subprocess
import sys

import torch

from cnnscope.store import changed_settings, load_tensors, save_tensors, write_json

WRITE = ("import torch, sys\nfrom cnnscope.store import save_tensors\n"
         "save_tensors({'w': torch.arange(6.0).view(2, 3), 'b': torch.ones(2)}, sys.argv[1], 'cnnscope-test-1', "
         "settings='{\"a\": 1}', info='x', zeta='z')\n")


def test_safetensors_bytes_do_not_depend_on_the_process(tmp_path):
    # safetensors writes its metadata map in a per-process hash order; save_tensors must not
    paths = [tmp_path / f"t{i}.safetensors" for i in range(4)]
    for p in paths:
        subprocess.run([sys.executable, "-c", WRITE, str(p)], check=True)
    assert len({p.read_bytes() for p in paths}) == 1
    tensors, meta = load_tensors(paths[0], "cnnscope-test-1", "test file")
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3))
    assert meta == {"format": "cnnscope-test-1", "settings": '{"a": 1}', "info": "x", "zeta": "z"}


def test_safetensors_file_is_readable_by_the_library(tmp_path):
    from safetensors.torch import load_file

    save_tensors({"x": torch.randn(3, 5)}, tmp_path / "x.safetensors", "f")
    assert load_file(str(tmp_path / "x.safetensors"))["x"].shape == (3, 5)


def test_changed_settings_names_what_differs(tmp_path):
    old = {"layer": "stage2", "recipe": {"name": "mv", "iters": 300}, "size": 224}
    write_json({"settings": old}, tmp_path / "k.json")
    new = {"layer": "stage2", "recipe": {"name": "lucid", "iters": 256}, "size": 128}
    assert changed_settings(tmp_path, "k", new) == ["recipe mv -> lucid", "size"]
    assert changed_settings(tmp_path, "k", old) == []
    assert changed_settings(tmp_path, "missing", new) == []  # no record: nothing to say
