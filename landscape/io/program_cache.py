"""A fast second open of a ``torch.export`` archive: its graph kept as plain JSON plus tensors.

Reading a ``.pt2`` imports torch's export reader, which imports the compiler stack (about a
second on a small machine, every process, every time). After the first read, the program's
graph is written to ``<cache>/programs/<sha256 of the archive>-<torch version>.json`` and its
tensors beside it as ``.safetensors``; a later open of the same bytes (in this process, a
new one or a worker process) rebuilds the same ``torch.fx.GraphModule`` from those two files
without the export reader.

What the JSON may hold, and nothing else: nodes ``placeholder``, ``get_attr``, ``output`` and
``call_function`` whose target is an ``aten`` operator overload (resolved by name in
``torch.ops.aten``) or ``operator.getitem``; arguments made of node references, numbers,
booleans, strings, None, lists, tuples, dtypes, devices, layouts and memory formats. A
tampered cache file can therefore describe only a graph of aten operators: nothing in it is
ever executed as code. A program outside this subset (other operators, several inputs or
outputs, submodule calls besides the input guard) is simply not cached.

    module = load_cached(source)          # None when not cached
    store(source, module, static_batch)   # after a normal read; False when not cacheable
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
from pathlib import Path

import torch
from torch import nn

from landscape.io.pt2_reader import aten_overload, register

FORMAT = 1
_SIMPLE = (int, float, bool, str, type(None))


def cache_root() -> Path:
    """``$LANDSCAPE_CACHE`` or ``~/.cache/landscape`` (the presets' cache too)."""
    return Path(os.environ.get("LANDSCAPE_CACHE", Path.home() / ".cache" / "landscape"))


def _paths(source: bytes) -> tuple[Path, Path]:
    key = f"{hashlib.sha256(source).hexdigest()}-{torch.__version__.replace('+', '_')}"
    folder = cache_root() / "programs"
    return folder / f"{key}.json", folder / f"{key}.safetensors"


class NotCacheable(ValueError):
    pass


def _encode(a):
    if isinstance(a, torch.fx.Node):
        return {"node": a.name}
    if isinstance(a, bool) or a is None or isinstance(a, (int, str)):
        return a
    if isinstance(a, float):
        return {"float": repr(a)}  # keeps inf, nan and the int/float distinction
    if isinstance(a, (list, tuple)):  # fx's immutable_list is a list
        return {"tuple" if isinstance(a, tuple) else "list": [_encode(x) for x in a]}
    if isinstance(a, torch.dtype):
        return {"dtype": str(a).removeprefix("torch.")}
    if isinstance(a, torch.device):
        return {"device": str(a)}
    if isinstance(a, torch.layout):
        return {"layout": str(a).removeprefix("torch.")}
    if isinstance(a, torch.memory_format):
        return {"memory_format": str(a).removeprefix("torch.")}
    raise NotCacheable(f"argument of type {type(a).__name__}")


def _decode(a, nodes: dict):
    if isinstance(a, _SIMPLE):
        return a
    if not isinstance(a, dict) or len(a) != 1:
        raise NotCacheable("malformed argument")
    (kind, v), = a.items()
    if kind == "node":
        return nodes[v]
    if kind == "float":
        return float(v)
    if kind in ("list", "tuple"):
        items = [_decode(x, nodes) for x in v]
        return items if kind == "list" else tuple(items)
    if kind in ("dtype", "layout", "memory_format"):
        value = getattr(torch, str(v), None)
        if not isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
            raise NotCacheable(f"unknown {kind} {v!r}")
        return value
    if kind == "device":
        return torch.device(str(v))
    raise NotCacheable(f"unknown argument kind {kind!r}")


def _target_name(target) -> str:
    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload) and target.namespace == "aten":
        return f"aten.{target._schema.name.removeprefix('aten::')}.{target._overloadname}"
    raise NotCacheable(f"operator {target}")


def _target(name: str):
    if name == "getitem":
        return operator.getitem
    parts = name.split(".")
    overload = aten_overload(parts[1], parts[2]) if len(parts) == 3 and parts[0] == "aten" else None
    if overload is None:
        raise NotCacheable(f"operator {name!r}")
    return overload


def describe(module: nn.Module) -> tuple[dict, dict]:
    """``(graph description, tensors by name)`` of an exported program's module; raises
    :class:`NotCacheable` outside the subset in the module docstring."""
    gm = module
    if not isinstance(gm, torch.fx.GraphModule):
        raise NotCacheable("not a graph")
    nodes, tensors, kinds = [], {}, {}
    inputs = 0
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target == "_guards_fn":
            if node.users:
                raise NotCacheable("the input guard's result is used")
            continue
        if node.op == "placeholder":
            inputs += 1
            nodes.append({"op": "placeholder", "name": node.name})
        elif node.op == "get_attr":
            value = _attr(gm, node.target)
            if not isinstance(value, torch.Tensor):
                raise NotCacheable(f"attribute {node.target} is not a tensor")
            kinds[node.target] = ("parameter" if isinstance(value, nn.Parameter) else
                                  "buffer" if _is_buffer(gm, node.target) else "constant")
            tensors[node.target] = value.detach().contiguous()
            nodes.append({"op": "get_attr", "name": node.name, "target": node.target})
        elif node.op == "call_function":
            nodes.append({"op": "call_function", "name": node.name, "target": _target_name(node.target),
                          "args": _encode(tuple(node.args)), "kwargs": {k: _encode(v) for k, v in node.kwargs.items()}})
        elif node.op == "output":
            out = node.args[0]
            if isinstance(out, (tuple, list)):
                if len(out) != 1:
                    raise NotCacheable("several outputs")
                out = out[0]
            if not isinstance(out, torch.fx.Node):
                raise NotCacheable("the output is not a tensor")
            nodes.append({"op": "output", "arg": out.name})
        else:
            raise NotCacheable(f"node {node.op} {node.target}")
    if inputs != 1:
        raise NotCacheable("not exactly one input")
    params = [n for n, _ in gm.named_parameters()]
    buffers = [n for n, _ in gm.named_buffers()]
    missing = (set(params) | set(buffers)) - set(tensors)
    for name in missing:  # unused by the graph, kept so the parameter order is the same
        value = _attr(gm, name)
        kinds[name] = "parameter" if name in params else "buffer"
        tensors[name] = value.detach().contiguous()
    grads = {n: bool(p.requires_grad) for n, p in gm.named_parameters()}
    return {"format": FORMAT, "nodes": nodes, "parameters": params, "buffers": buffers,
            "kinds": kinds, "requires_grad": grads}, tensors


def _attr(module, target: str):
    for part in target.split("."):
        module = getattr(module, part)
    return module


def _is_buffer(gm, target: str) -> bool:
    try:
        gm.get_buffer(target)
        return True
    except AttributeError:
        return False


def rebuild(desc: dict, tensors: dict) -> torch.fx.GraphModule:
    """The ``GraphModule`` a :func:`describe` output describes (parameters registered in the
    original order, so flat parameter vectors line up)."""
    if desc.get("format") != FORMAT:
        raise NotCacheable("another cache format")
    root = nn.Module()
    kinds = desc["kinds"]
    order = list(desc["parameters"]) + [n for n in desc["buffers"] if n not in desc["parameters"]]
    order += [n for n in kinds if n not in order]
    for name in order:
        register(root, name, tensors[name], kinds[name], desc["requires_grad"].get(name, True))
    graph = torch.fx.Graph()
    nodes: dict = {}
    for n in desc["nodes"]:
        op = n["op"]
        if op == "placeholder":
            nodes[n["name"]] = graph.placeholder(n["name"])
        elif op == "get_attr":
            if n["target"] not in kinds:
                raise NotCacheable(f"unknown attribute {n['target']!r}")
            nodes[n["name"]] = graph.get_attr(n["target"])
        elif op == "call_function":
            args = _decode(n["args"], nodes)
            kwargs = {k: _decode(v, nodes) for k, v in n["kwargs"].items()}
            nodes[n["name"]] = graph.call_function(_target(n["target"]), tuple(args), kwargs)
        elif op == "output":
            graph.output(nodes[n["arg"]])
        else:
            raise NotCacheable(f"node {op!r}")
    gm = torch.fx.GraphModule(root, graph)
    if [n for n, _ in gm.named_parameters()] != list(desc["parameters"]):
        raise NotCacheable("the parameter order differs")
    return gm


def store(source: bytes, module: nn.Module, static_batch: int | None) -> bool:
    """Write the cache entry of an archive read the normal way; False (and nothing written)
    when the program is outside the subset or the cache folder cannot be written."""
    from safetensors.torch import save_file

    try:
        desc, tensors = describe(module)
        desc["static_batch"] = static_batch
        meta, weights = _paths(source)
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(f".{os.getpid()}.tmp")
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, weights)
        tmp = meta.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(desc))
        os.replace(tmp, meta)  # the JSON last: its presence means the entry is whole
        return True
    except (NotCacheable, OSError, RuntimeError):  # RuntimeError: tensors sharing memory
        return False


def is_cached(source: bytes) -> bool:
    """True when these archive bytes have a cache entry (it is read only by :func:`load_cached`)."""
    meta, weights = _paths(source)
    return meta.is_file() and weights.is_file()


def load_cached(source: bytes) -> tuple[torch.fx.GraphModule, int | None] | None:
    """``(module, static batch or None)`` rebuilt from the cache entry of these archive bytes,
    or None when there is none (or it cannot be used)."""
    from safetensors.torch import load_file

    meta, weights = _paths(source)
    if not meta.is_file() or not weights.is_file():
        return None
    try:
        desc = json.loads(meta.read_text())
        return rebuild(desc, load_file(str(weights))), desc.get("static_batch")
    except (NotCacheable, OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None
