"""Loading and saving models without ever running code from a file.

Formats, in order of preference:

- ``.pt2``: a ``torch.export`` program of any architecture. ``torch.export.load`` may fall
  back to ``torch.load(weights_only=False)`` and ``pickle.loads`` for custom objects; we load
  under a guard that forces ``weights_only=True`` and refuses every unpickling of arbitrary
  objects, so a crafted archive fails instead of running code.
- ``.safetensors`` with the app's JSON sidecar (same stem, ``.json``): zoo spec, data spec,
  recipe. The format ``landscape train --out`` and the app write.
- ``.pt`` / ``.pth``: a state_dict for a zoo architecture, read with
  ``torch.load(weights_only=True)``; the architecture comes from ``arch`` (a zoo spec) or
  from a sidecar, and mismatched keys are listed by name.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from landscape.core import models
from landscape.core.data import check_file
from landscape.core.errors import LandscapeError

FORMATS = (".pt2", ".safetensors", ".pt", ".pth")
MAX_CHECKPOINT_BYTES = 500 * 1024 * 1024
SIDECAR_FORMAT = "landscape-checkpoint/1"
EXPORT_HINT = ("export the model with torch.export: "
               "torch.export.save(torch.export.export(model.eval(), (example_input,)), 'model.pt2')")


@dataclass
class LoadedModel:
    """A model ready for evaluation (eval mode) plus what the file said about it."""

    model: nn.Module
    format: str
    spec: dict | None = None
    data: dict | str | None = None
    meta: dict = field(default_factory=dict)


_guard_lock = threading.Lock()


@contextlib.contextmanager
def _no_code_execution():
    """Force ``torch.load(weights_only=True)`` and refuse raw unpickling while active."""
    import pickle

    import torch.export.pt2_archive._package as pkg

    real_load = torch.serialization.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*_a, **_k):
        raise pickle.UnpicklingError("the archive holds pickled Python objects")

    class _Refusing:
        loads = staticmethod(refuse)
        UnpicklingError = pickle.UnpicklingError

    with _guard_lock:
        real_load = torch.serialization.load  # read under the lock: never another guard's
        old_pkg_pickle = pkg.pickle
        old_c = torch._C._pickle_load_obj
        torch.load = safe_load
        pkg.pickle = _Refusing
        torch._C._pickle_load_obj = refuse
        try:
            yield
        finally:
            torch.load = real_load
            pkg.pickle = old_pkg_pickle
            torch._C._pickle_load_obj = old_c


def _check_file(path: Path) -> None:
    check_file(path, path.name, MAX_CHECKPOINT_BYTES, missing=f"checkpoint not found: {path}",
               folder=f"checkpoint path is a folder, not a file: {path}")


def read_sidecar(path: Path) -> dict | None:
    side = Path(path).with_suffix(".json")
    if not side.exists():
        return None
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LandscapeError(f"{side.name}: the sidecar is not valid JSON") from None
    if not isinstance(meta, dict):
        raise LandscapeError(f"{side.name}: the sidecar must be a JSON object")
    return meta


NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd", ".cpp", ".cubin", ".o")


def _refuse_native_code(path: Path, source=None) -> None:
    """An AOTInductor package inside a ``.pt2`` carries a compiled library that
    ``torch.export.load`` would load: native code from the file. Refuse such archives.
    ``source``: the archive's bytes (default: read ``path``)."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if source is not None else path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        raise LandscapeError(f"{path.name}: not a torch.export archive (truncated or wrong type)") from None
    bad = [n for n in names if "aotinductor" in n.lower() or n.lower().endswith(NATIVE_SUFFIXES)]
    if bad:
        raise LandscapeError(f"{path.name}: refused, the archive holds compiled code ({bad[0]}); "
                             f"{EXPORT_HINT}")


# torch's pytree module warns about its own deprecated ``LeafSpec`` while an exported
# program's tree specs are unpickled (and when its module is deep-copied); only that warning
# is silenced, only around those calls.
PYTREE_WARNING = r".*LeafSpec"


@contextlib.contextmanager
def quiet_pytree():
    """Silence torch's pytree ``LeafSpec`` FutureWarning for the block (nothing else)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PYTREE_WARNING, category=FutureWarning)
        yield


def _load_pt2(path: Path) -> LoadedModel:
    if not zipfile.is_zipfile(path):
        raise LandscapeError(f"{path.name}: not a torch.export archive (truncated or wrong type)")
    module, batch = program_from_bytes(path.read_bytes(), path.name)
    return LoadedModel(module, "pt2", None, None,
                       {"n_params": _count(module), "static_batch": batch})


def program_from_bytes(source: bytes, name: str = "program.pt2") -> tuple[nn.Module, int | None]:
    """``(module, static batch or None)`` of a ``torch.export`` archive given as bytes, loaded
    under the guard that refuses pickled objects and compiled code (see the module docstring).

    The module (in eval mode, wrapped in :class:`StaticBatch` when the program has a fixed
    batch size) keeps the archive's bytes as ``module.landscape_pt2``, so worker processes
    can load the same program once from those bytes instead of pickling the module (an
    exported module cannot be pickled). Programs of ``aten`` operators are read directly
    (:mod:`landscape.io.pt2_reader`); others with ``torch.export.load``, and kept in the
    program cache (:mod:`landscape.io.program_cache`) so a second open skips that reader."""
    from landscape.io import program_cache, pt2_reader

    path = Path(name)
    _refuse_native_code(path, source)
    try:  # most programs: read directly, no export reader, nothing unpickled
        module, batch = pt2_reader.read(source)
    except pt2_reader.NotReadable:
        cached = program_cache.load_cached(source)  # read before by the export reader
        if cached is not None:
            module, batch = cached
        else:
            module, batch = _read_program(source, path)
            program_cache.store(source, module, batch)
    if batch is not None:
        module = StaticBatch(module, batch)
    module.landscape_pt2 = source
    return module, batch


def _read_program(source: bytes, path: Path) -> tuple[nn.Module, int | None]:
    """The archive read with ``torch.export.load`` under the guard: ``(module in eval mode,
    static batch or None)``."""
    try:
        with _no_code_execution(), quiet_pytree():
            ep = torch.export.load(io.BytesIO(source))
    except Exception as e:
        text = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        if "pickle" in text.lower() or "weights_only" in text.lower() or "Unpickl" in type(e).__name__:
            raise LandscapeError(f"{path.name}: refused, the archive needs code execution to "
                                 f"load ({text}); {EXPORT_HINT}") from None
        raise LandscapeError(f"{path.name}: cannot read the torch.export archive ({text})") from None
    with quiet_pytree():
        module = ep.module()
    _eval_mode(module)
    return module, _static_batch(ep)


def _static_batch(ep) -> int | None:
    """The fixed batch size an exported program was traced with, or None when dynamic."""
    users = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            val = node.meta.get("val")
            if val is not None and hasattr(val, "shape") and len(val.shape) > 0:
                return int(val.shape[0]) if isinstance(val.shape[0], int) else None
    return None


class StaticBatch(nn.Module):
    """Runs a program traced with a fixed batch size ``batch`` on any number of examples:
    chunks of ``batch``, the last one padded by repeating its first example (outputs of the
    padding are dropped; valid for per-example models such as eval-mode BatchNorm)."""

    def __init__(self, program: nn.Module, batch: int):
        super().__init__()
        self.program = program
        self.batch = batch

    def forward(self, x):
        outs = []
        for i in range(0, x.shape[0], self.batch):
            xb = x[i:i + self.batch]
            n = xb.shape[0]
            if n < self.batch:
                xb = torch.cat([xb, xb[:1].expand(self.batch - n, *xb.shape[1:])])
            outs.append(self.program(xb)[:n])
        return torch.cat(outs)


def _eval_mode(module: nn.Module) -> None:
    """Put a module in eval mode; an exported program's module may refuse ``.eval()``."""
    try:
        module.eval()
    except Exception:
        try:
            torch.ao.quantization.move_exported_model_to_eval(module)
        except Exception:
            pass


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, Exception) as e:
            raise LandscapeError(f"{path.name}: not a readable safetensors file "
                                 f"({str(e).splitlines()[0][:120]})") from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e)
        if "weights_only" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
            raise LandscapeError(
                f"{path.name}: refused, it holds pickled Python objects, not only tensors; "
                f"save model.state_dict() instead, or {EXPORT_HINT}") from None
        raise LandscapeError(f"{path.name}: cannot read the file (truncated or not a torch "
                             f"checkpoint: {msg.splitlines()[0][:120] if msg else type(e).__name__})") from None
    if isinstance(sd, nn.Module):  # cannot happen with weights_only, kept for clarity
        raise LandscapeError(f"{path.name}: a pickled module; {EXPORT_HINT}")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise LandscapeError(f"{path.name}: expected a state_dict (name -> tensor)")
    return sd


def _fill(model: nn.Module, sd: dict, name: str) -> nn.Module:
    _check_keys(model, sd, name)
    dtype = next(iter(sd.values())).dtype if sd else torch.float32
    if dtype.is_floating_point:
        model = model.to(dtype)
    model.load_state_dict(sd)
    return model.eval()


def _check_keys(model: nn.Module, sd: dict, name: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:4]}")
        raise LandscapeError(f"{name}: the state_dict does not fit the architecture: "
                             + "; ".join(parts))


def load(path, arch=None) -> LoadedModel:
    """Load a checkpoint in any supported format; see the module docstring."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LandscapeError(f"{path.name}: unsupported checkpoint type {suffix or '(none)'}; "
                             f"use one of {', '.join(FORMATS)}")
    if suffix == ".pt2":
        return _load_pt2(path)
    side = read_sidecar(path)
    if side is None and suffix == ".safetensors":
        side = _embedded_sidecar(path)
    spec = arch if arch is not None else (side or {}).get("model")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            raise LandscapeError(f"--arch is not a JSON zoo spec: {spec[:80]}") from None
    sd = _read_state_dict(path)
    if spec is None:
        raise LandscapeError(
            f"{path.name}: the architecture is unknown; pass a zoo spec with --arch, e.g. "
            '\'{"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [128, 128]}}\'')
    with torch.device("meta"):  # check the shapes before allocating anything real
        _check_keys(models.build(spec), sd, path.name)
    model = _fill(models.build(spec), sd, path.name)
    model.zoo_spec = models.spec_of(model) or spec
    side = side or {}
    return LoadedModel(model, suffix.lstrip("."), spec, side.get("data"),
                       {"recipe": side.get("recipe"), "n_params": _count(model)})


def save(model: nn.Module, path, data=None, recipe: dict | None = None) -> Path:
    """Write a zoo model as ``.safetensors`` (sidecar embedded) plus a ``.json`` sidecar."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt2":
        raise LandscapeError("save a .pt2 with torch.export.save; landscape writes .safetensors")
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    side = _sidecar(model, data, recipe)
    path.write_bytes(to_bytes(model, data, recipe))
    path.with_suffix(".json").write_text(json.dumps(side, indent=2, default=str))
    return path


def _sidecar(model: nn.Module, data, recipe) -> dict:
    spec = models.spec_of(model)
    if spec is None:
        raise LandscapeError("only zoo models can be saved as .safetensors with a sidecar")
    return {"format": SIDECAR_FORMAT, "model": spec, "data": data, "recipe": recipe}


def to_bytes(model: nn.Module, data=None, recipe: dict | None = None) -> bytes:
    """A self-contained ``.safetensors`` file: the sidecar JSON is also embedded in the
    header metadata (key ``landscape``), so a single downloaded file loads again."""
    from safetensors.torch import save

    side = _sidecar(model, data, recipe)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return save(sd, metadata={"landscape": json.dumps(side, default=str)})


def _embedded_sidecar(path: Path) -> dict | None:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["landscape"]) if "landscape" in meta else None
    except Exception:
        return None
