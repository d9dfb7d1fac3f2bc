"""Reading a ``torch.export`` archive (``.pt2``) ourselves, for the programs most users save.

An archive is a zip: ``<name>/models/<model>.json`` holds the program's graph in torch's
documented export schema (nodes with operator names and typed arguments, a signature naming
which inputs are parameters, buffers or the user's input), and ``<name>/data/weights/`` holds
each tensor as raw bytes described by ``model_weights_config.json`` (dtype, sizes, strides).
:func:`read` builds the same ``torch.fx.GraphModule`` that ``torch.export.load(...).module()``
gives, with parameters and buffers under their original names and in their original order,
without torch's export reader (which imports the compiler stack, about a second) and without
unpickling anything.

The subset read: one model; one tensor input; one tensor output; parameters and buffers only
(no tensor constants or custom objects); nodes calling ``aten`` operators with tensors,
numbers, booleans, strings, None, dtypes, layouts, memory formats, devices and symbolic sizes
(``sym_size``) as arguments; no node in training mode (``batch_norm(training=True)``,
``dropout(train=True)``: the standard reader would switch those to eval mode); little-endian
raw weights, never pickled ones. Anything else raises :class:`NotReadable`, and the caller
falls back to ``torch.export.load`` under its pickle-refusing guard.
"""

from __future__ import annotations

import io
import json
import zipfile

import torch
from torch import nn

# torch's export schema ScalarType numbers (torch/_export/serde/schema.py)
SCALAR_TYPES = {1: torch.uint8, 2: torch.int8, 3: torch.int16, 4: torch.int32, 5: torch.int64,
                6: torch.float16, 7: torch.float32, 8: torch.float64, 12: torch.bool, 13: torch.bfloat16}
LAYOUTS = {7: torch.strided}
MEMORY_FORMATS = {1: torch.contiguous_format, 2: torch.channels_last, 3: torch.channels_last_3d,
                  4: torch.preserve_format}
POSITIONAL, KEYWORD = 1, 2


class NotReadable(ValueError):
    """The archive is outside the subset this reader handles (the standard reader may read it)."""


def _one(d: dict):
    if not isinstance(d, dict) or len(d) != 1:
        raise NotReadable("malformed argument")
    return next(iter(d.items()))


def _int(v):
    kind, x = _one(v)
    if kind != "as_int":
        raise NotReadable(f"symbolic size {kind}")
    return int(x)


class _Builder:
    def __init__(self, graph: torch.fx.Graph):
        self.graph = graph
        self.values: dict = {}  # serialized value name -> fx node

    def tensor(self, name: str):
        if name not in self.values:
            raise NotReadable(f"unknown value {name!r}")
        return self.values[name]

    def sym(self, v):
        kind, x = _one(v)
        if kind == "as_int":
            return int(x)
        if kind == "as_name":
            return self.tensor(x)
        raise NotReadable(f"symbolic value {kind}")

    def arg(self, a):
        kind, v = _one(a)
        if kind == "as_none":
            return None
        if kind == "as_tensor":
            return self.tensor(v["name"])
        if kind == "as_tensors":
            return [self.tensor(t["name"]) for t in v]
        if kind == "as_optional_tensors":
            return [self.arg(t) if "as_tensor" in t else None for t in v]
        if kind in ("as_int", "as_float", "as_bool", "as_string"):
            return {"as_int": int, "as_float": float, "as_bool": bool, "as_string": str}[kind](v)
        if kind in ("as_ints", "as_floats", "as_bools", "as_strings"):
            cast = {"as_ints": int, "as_floats": float, "as_bools": bool, "as_strings": str}[kind]
            return [cast(x) for x in v]
        if kind == "as_sym_int":
            return self.sym(v)
        if kind == "as_sym_ints":
            return [self.sym(x) for x in v]
        if kind == "as_scalar_type":
            if v not in SCALAR_TYPES:
                raise NotReadable(f"dtype {v}")
            return SCALAR_TYPES[v]
        if kind == "as_layout":
            if v not in LAYOUTS:
                raise NotReadable(f"layout {v}")
            return LAYOUTS[v]
        if kind == "as_memory_format":
            if v not in MEMORY_FORMATS:
                raise NotReadable(f"memory format {v}")
            return MEMORY_FORMATS[v]
        if kind == "as_device":
            return torch.device(v["type"], v.get("index"))
        raise NotReadable(f"argument {kind}")

    def node(self, n: dict) -> None:
        target = _operator(n["target"])
        args, kwargs = [], {}
        for inp in n["inputs"]:
            value = self.arg(inp["arg"])
            if inp.get("kind", POSITIONAL) == KEYWORD:
                kwargs[inp["name"]] = value
            elif kwargs:
                raise NotReadable("a positional argument after a keyword")
            else:
                args.append(value)
        _refuse_training(target, args, kwargs)
        node = self.graph.call_function(target, tuple(args), kwargs)
        outs = n["outputs"]
        if len(outs) != 1:
            raise NotReadable("a node with several outputs")
        kind, v = _one(outs[0])
        if kind == "as_tensor":
            self.values[v["name"]] = node
        elif kind == "as_sym_int":
            k, name = _one(v)
            if k != "as_name":
                raise NotReadable("a constant symbolic output")
            self.values[name] = node
        elif kind == "as_tensors":
            import operator

            for i, t in enumerate(v):
                self.values[t["name"]] = self.graph.call_function(operator.getitem, (node, i))
        else:
            raise NotReadable(f"output {kind}")


def _operator(name: str):
    parts = name.split(".")
    if len(parts) != 5 or parts[:3] != ["torch", "ops", "aten"]:
        raise NotReadable(f"operator {name}")
    op = aten_overload(parts[3], parts[4])
    if op is None:
        raise NotReadable(f"operator {name}")
    return op


def aten_overload(packet: str, overload: str):
    """``torch.ops.aten.<packet>.<overload>`` looked up by name (an operator, never code from
    the file), or None when there is no such operator."""
    found = getattr(torch.ops.aten, packet, None)
    op = getattr(found, overload, None) if found is not None else None
    return op if isinstance(op, torch._ops.OpOverload) else None


def _refuse_training(target, args, kwargs) -> None:
    aten = torch.ops.aten
    flags = {aten.batch_norm.default: ("training", 5), aten.dropout.default: ("train", 2),
             aten._native_batch_norm_legit_functional.default: ("training", 5)}
    if target in flags:
        name, pos = flags[target]
        flag = kwargs.get(name, args[pos] if len(args) > pos else False)
        if flag:
            raise NotReadable("a node in training mode")
    if target in (aten.feature_dropout.default, aten.alpha_dropout.default):
        raise NotReadable("dropout")


def _weights(z: zipfile.ZipFile, prefix: str) -> dict:
    """Tensors by name from the raw weight files (never pickled ones)."""
    if z.read(f"{prefix}/byteorder").decode().strip() != "little":
        raise NotReadable("big-endian weights")
    config = json.loads(z.read(f"{prefix}/data/weights/model_weights_config.json"))["config"]
    constants = f"{prefix}/data/constants/model_constants_config.json"
    if constants in z.namelist() and json.loads(z.read(constants)).get("config"):
        raise NotReadable("tensor constants")
    out = {}
    for name, entry in config.items():
        meta = entry["tensor_meta"]
        if entry.get("use_pickle") or meta["dtype"] not in SCALAR_TYPES or meta.get("layout", 7) != 7:
            raise NotReadable(f"weight {name} is pickled or of an unsupported type")
        dtype = SCALAR_TYPES[meta["dtype"]]
        raw = bytearray(z.read(f"{prefix}/data/weights/{entry['path_name']}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        sizes = [_int(s) for s in meta["sizes"]]
        strides = [_int(s) for s in meta["strides"]]
        t = flat.as_strided(sizes, strides, _int(meta["storage_offset"])).clone()
        out[name] = (t, bool(entry.get("is_param")), bool(meta.get("requires_grad")))
    return out


def read(source: bytes) -> tuple[torch.fx.GraphModule, int | None]:
    """``(module, static batch or None)`` of the archive ``source`` (see the module docstring);
    raises :class:`NotReadable` outside the subset."""
    try:
        z = zipfile.ZipFile(io.BytesIO(source))
    except zipfile.BadZipFile:
        raise NotReadable("not a zip archive") from None
    models = [n for n in z.namelist() if n.count("/") == 2 and n.split("/")[1] == "models"
              and n.endswith(".json")]
    if len(models) != 1:
        raise NotReadable("not exactly one model")
    prefix = models[0].split("/")[0]
    try:
        program = json.loads(z.read(models[0]))
        weights = _weights(z, prefix)
        gm_desc = program["graph_module"]
        graph_desc, signature = gm_desc["graph"], gm_desc["signature"]
    except (KeyError, json.JSONDecodeError, UnicodeDecodeError, RuntimeError) as e:
        raise NotReadable(f"unexpected archive layout ({type(e).__name__})") from None
    graph = torch.fx.Graph()
    build = _Builder(graph)
    root = nn.Module()
    user_inputs, batch = [], None
    for spec in signature["input_specs"]:
        kind, v = _one(spec)
        if kind in ("parameter", "buffer"):
            target = v["parameter_name"] if kind == "parameter" else v["buffer_name"]
            if target not in weights:
                raise NotReadable(f"missing weight {target}")
            t, is_param, grad = weights[target]
            register(root, target, t, "parameter" if kind == "parameter" else "buffer", grad)
            build.values[v["arg"]["name"]] = graph.get_attr(target)
        elif kind == "user_input":
            k, arg = _one(v["arg"])
            if k != "as_tensor":
                raise NotReadable("a non-tensor input")
            name = arg["name"]
            build.values[name] = graph.placeholder(name)
            user_inputs.append(name)
            first = graph_desc["tensor_values"].get(name, {}).get("sizes", [{}])[0]
            batch = int(first["as_int"]) if "as_int" in first else None
        else:
            raise NotReadable(f"input of kind {kind}")
    if len(user_inputs) != 1:
        raise NotReadable("not exactly one input")
    for n in graph_desc["nodes"]:
        build.node(n)
    outs = signature["output_specs"]
    if len(outs) != 1 or _one(outs[0])[0] != "user_output":
        raise NotReadable("not exactly one output")
    k, arg = _one(_one(outs[0])[1]["arg"])
    if k != "as_tensor":
        raise NotReadable("a non-tensor output")
    graph.output(build.tensor(arg["name"]))
    return torch.fx.GraphModule(root, graph), batch  # every parameter and buffer, in order


def register(root: nn.Module, target: str, t: torch.Tensor, kind: str, grad: bool = True) -> None:
    """Put ``t`` at the dotted ``target`` under ``root`` (submodules made as needed) as a
    ``"parameter"``, a ``"buffer"`` or a plain ``"constant"`` attribute."""
    owner = root
    *path, leaf = target.split(".")
    for part in path:
        if not hasattr(owner, part):
            owner.add_module(part, nn.Module())
        owner = getattr(owner, part)
    if kind == "parameter":
        owner.register_parameter(leaf, nn.Parameter(t, requires_grad=grad))
    elif kind == "buffer":
        owner.register_buffer(leaf, t)
    else:
        setattr(owner, leaf, t)
