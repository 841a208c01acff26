"""User models: `path/to/file.py:factory` (a function returning an nn.Module) or a TorchScript file."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnscopeError


def is_user_model(spec: str) -> bool:
    path = spec.rsplit(":", 1)[0] if ".py:" in spec else spec
    return spec.endswith(".py") or ".py:" in spec or Path(path).suffix in (".pt", ".pth", ".ts", ".jit")


def build_user_model(spec: str) -> tuple[nn.Module, bool]:
    """Return (module, is_torchscript)."""
    if ".py" in spec and (spec.endswith(".py") or ".py:" in spec):
        file, _, factory = spec.partition(".py")
        file += ".py"
        factory = factory.lstrip(":") or "build"
        return _from_python(file, factory), False
    return _from_torchscript(spec), True


def _from_python(file: str, factory: str) -> nn.Module:
    path = Path(file)
    if not path.is_file():
        raise CnnscopeError(f"model file {file}: no such file")
    name = f"cnnscope_user_model_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise CnnscopeError(f"model file {file}: failed to import ({type(err).__name__}: {err})") from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise CnnscopeError(
            f"model file {file}: has no function '{factory}' (callables there: {', '.join(found[:8]) or 'none'})"
        )
    try:
        net = fn()
    except Exception as err:
        raise CnnscopeError(f"model factory {file}:{factory} raised {type(err).__name__}: {err}") from None
    if not isinstance(net, nn.Module):
        raise CnnscopeError(f"model factory {file}:{factory} returned {type(net).__name__}, not a torch.nn.Module")
    return net


def _from_torchscript(file: str) -> nn.Module:
    path = Path(file)
    if not path.is_file():
        raise CnnscopeError(f"model file {file}: no such file")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; loading still works
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception:
        raise CnnscopeError(f"model file {file}: {_what_it_is(path)}") from None


def _what_it_is(path: Path) -> str:
    """Why a --model file is not TorchScript, and which option loads what it is."""
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)  # never runs pickled code
    except Exception as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            return ("a whole pickled module (torch.save(model)), which cnnscope will not unpickle (it runs code): "
                    "save it with torch.jit.script(model).save(FILE), or give --model file.py:factory and "
                    "--weights with torch.save(model.state_dict())")
        return "neither a TorchScript file nor a PyTorch checkpoint (give --model file.py:factory or a .pt TorchScript)"
    if isinstance(data, dict) and data and all(torch.is_tensor(v) for v in data.values()):
        return (f"a state dict ({len(data)} tensors, no architecture): give the architecture as --model "
                "file.py:factory and this file as --weights")
    if isinstance(data, dict):
        keys = ", ".join(list(map(str, data))[:5])
        return (f"a checkpoint dictionary (keys: {keys}), not a network: give the architecture as --model "
                "file.py:factory and its weights (the state dict inside) as --weights")
    return f"a saved {type(data).__name__}, not a TorchScript network"
