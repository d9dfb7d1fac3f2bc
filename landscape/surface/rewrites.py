"""Exact rewrites of a model copy that make a surface point cheaper (used by
:class:`landscape.surface.evaluators.ModuleEvaluator`, which keeps them only when a trial
point agrees with the plain forward).

- **First-layer factorisation** (:func:`install_first_layer`): a Linear or Conv layer
  ``f(x; W, c)`` is linear in its weight and bias jointly, so on the plane
  ``W + a Dx + b Dy`` its output is ``f(x; W, c) + a f(x; Dx, dcx) + b f(x; Dy, dcy)``:
  three layer outputs once per plane, one axpy per point. Applies when the first
  parametrised layer (a submodule of an ``nn.Module``, found by call order; or the first
  ``aten`` linear/convolution node of an exported graph) is Linear or Conv, its parameters
  are not shared, and it runs once per forward. Its input must not move with the point:
  checked at every call (same unmodified memory, else ``torch.equal``), else
  :class:`NotFactorable`.
- **In-place activations** (:func:`inplace_activations`, exported graphs): ``relu``/``tanh``
  of an intermediate result used by nothing else writes over it (``relu_``), saving an
  allocation and a pass over memory per activation.
- **An exported MLP read back as layers** (:func:`mlp_from_graph`): a graph that is only
  ``linear`` nodes and elementwise activations (after at most a flatten of the ``[N, F]``
  input) is the same function as an ``nn.Sequential`` of ``Linear`` and activation modules,
  which the hand-written MLP evaluator runs (buffers allocated once, fused loss). Its batch
  size is free, so a program exported with a fixed batch runs all examples at once.
- **A module as a graph** (:func:`trace_module`): an ``nn.Module`` is traced symbolically
  (``torch.fx``, the factored first layer kept as one call) so the graph rewrites below
  apply to modules as well as to exported programs; a module that cannot be traced keeps
  its own forward.
- **BatchNorm folding** (:func:`fold_batchnorm`, exported or traced graphs): an eval-mode
  ``batch_norm(conv(x, W, c))`` becomes ``conv(x, W s, (c - mean) s + beta)`` with
  ``s = gamma / sqrt(var + eps)`` per output channel, computed from the current parameters
  at every forward (a few ops on ``[C_out, ...]`` instead of a pass over ``[N, C, H, W]``).
"""

from __future__ import annotations

import torch
from torch import nn


class NotFactorable(RuntimeError):
    """The first layer's input changed between points: it depends on moving parameters."""


class FirstLayer(nn.Module):
    """Stands in for the first parametrised layer ``f(x; W, c)`` (Linear or Conv), which is
    linear in its weight and bias jointly: ``f(x; W + a Dx + b Dy, c + a dcx + b dcy) =
    f(x; W, c) + a f(x; Dx, dcx) + b f(x; Dy, dcy)``. The three outputs (each the layer's
    output shape, e.g. ``[N, C, H, W]``) are computed once, from the input seen on the first
    call; a point then costs one axpy (two when ``b`` changes). Every later call checks that
    its input is still that input (else :class:`NotFactorable`)."""

    def __init__(self, op, weights, biases):
        super().__init__()
        self.op, self.weights, self.biases = op, weights, biases
        self.x = None
        self.a = self.b = 0.0

    def set_point(self, a: float, b: float) -> None:
        self.a, self.b = a, b

    @staticmethod
    def _signature(x):
        """Where ``x`` lives and its version counter. The first input is held, so its memory
        is never handed to another tensor: an equal signature later means the same unmodified
        memory (e.g. a view of the evaluation data), so the same values."""
        return (x.data_ptr(), x.shape, x.stride(), x.dtype, x._version)

    def _same_input(self, x) -> bool:
        return x is self.x or self._signature(x) == self.seen or torch.equal(x, self.x)

    def forward(self, x):
        if self.x is None:
            self.x = x.detach().clone()
            self.held, self.seen = x, self._signature(x)  # held: its memory cannot be reused
            self.z = [self.op(x, W, c) for W, c in zip(self.weights, self.biases)]
            self.has_dy = bool(self.weights[2].any()) or (self.biases[2] is not None and bool(self.biases[2].any()))
            self.zb, self._b = self.z[0].clone(), 0.0
            self.out = torch.empty_like(self.z[0])
        elif not self._same_input(x):
            raise NotFactorable("the first layer's input depends on moving parameters")
        if self.has_dy and self.b != self._b:
            torch.add(self.z[0], self.z[2], alpha=self.b, out=self.zb)
            self._b = self.b
        return torch.add(self.zb, self.z[1], alpha=self.a, out=self.out)


LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _layer_ops():
    aten = torch.ops.aten
    return {aten.linear.default, aten.conv1d.default, aten.conv2d.default, aten.conv3d.default}


def install_first_layer(model: nn.Module, task, slices: dict):
    """Replace the first parametrised layer of ``model`` (in place) by a :class:`FirstLayer`
    when it is Linear or Conv and used once; returns ``(FirstLayer or None, its parameter
    names)``. ``task``: a ``PlaneTask``; ``slices``: parameter name -> slice of the flat vectors."""
    if isinstance(model, torch.fx.GraphModule):
        return _first_in_graph(model, task, slices)
    calls = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: calls.append(mod))
             for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    try:
        model(task.X[:2])
    finally:
        for h in hooks:
            h.remove()
    if not calls or not isinstance(calls[0], LAYER_TYPES) or calls.count(calls[0]) != 1:
        return None, ()
    layer = calls[0]
    path = next(n for n, m in model.named_modules() if m is layer)
    names = [f"{path}.{k}" for k, _ in layer.named_parameters()]
    shared = [p for _, p in model.named_parameters(remove_duplicate=False)
              if any(p is q for q in layer.parameters())]
    if len(shared) != len(names) or any(n not in slices for n in names) or layer.weight is None:
        return None, ()

    def op(x, W, c, layer=layer):
        params = {"weight": W} if c is None else {"weight": W, "bias": c}
        return torch.func.functional_call(layer, params, (x,))

    first = _make_first(op, task, slices, f"{path}.weight",
                        f"{path}.bias" if layer.bias is not None else None)
    parent_name, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, first)
    return first, tuple(names)


def _make_first(op, task, slices, wname, bname):
    sw = slices[wname]
    shape = dict(task.model.named_parameters())[wname].shape
    weights = [t[sw].view(shape) for t in (task.w, task.dx, task.dy)]
    biases = [None] * 3 if bname is None else [t[slices[bname]] for t in (task.w, task.dx, task.dy)]
    return FirstLayer(op, weights, biases)


def _first_in_graph(gm, task, slices):
    ops = _layer_ops()
    node = None
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in ops:
            node = n
            break
        if n.op != "get_attr" and any(a.op == "get_attr" and a.target in slices for a in n.all_input_nodes):
            return None, ()  # a moving parameter is used before the first layer
    if node is None or node.kwargs or len(node.args) < 2:
        return None, ()
    w = node.args[1]
    c = node.args[2] if len(node.args) > 2 else None
    for a in (w, c):
        if a is not None and (getattr(a, "op", None) != "get_attr" or a.target not in slices or len(a.users) != 1):
            return None, ()
    rest = tuple(node.args[3:])

    def op(x, W, b, target=node.target, rest=rest):
        return target(x, W, b, *rest)

    first = _make_first(op, task, slices, w.target, None if c is None else c.target)
    gm.add_submodule("landscape_first_layer", first)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module("landscape_first_layer", (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    for a in (w, c):
        if a is not None and not a.users:
            gm.graph.erase_node(a)
    gm.recompile()
    return first, tuple(a.target for a in (w, c) if a is not None)


def _bn_fold(w, c, gamma, beta, mean, var, eps: float):
    """``(W s, (c - mean) s + beta)`` with ``s = gamma / sqrt(var + eps)`` per output channel."""
    s = torch.rsqrt(var + eps)
    if gamma is not None:
        s = s * gamma
    w2 = w * s.reshape(-1, *([1] * (w.dim() - 1)))
    c2 = ((-mean) if c is None else (c - mean)) * s
    return w2, (c2 if beta is None else c2 + beta)


def trace_module(model: nn.Module):
    """``model`` traced by ``torch.fx`` into a ``GraphModule`` sharing its parameters and
    submodules (:class:`FirstLayer` and ``torch.nn`` modules kept as single calls), or None
    when it cannot be traced (data-dependent control flow, say) or is already a graph."""
    if isinstance(model, torch.fx.GraphModule):
        return None

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return isinstance(m, FirstLayer) or super().is_leaf_module(m, qualname)

    try:
        graph = Tracer().trace(model)
        return torch.fx.GraphModule(model, graph)
    except Exception:  # noqa: BLE001 - any module fx cannot trace keeps its own forward
        return None


def _conv_bn(x, w, c, gamma, beta, mean, var, eps: float, stride, padding, dilation, groups):
    """A ``w.dim() - 2``-D convolution of ``x`` then eval-mode BatchNorm, as one convolution
    with folded weights."""
    w2, c2 = _bn_fold(w, c, gamma, beta, mean, var, eps)
    conv = (torch.conv1d, torch.conv2d, torch.conv3d)[w.dim() - 3]
    return conv(x, w2, c2, stride, padding, dilation, groups)


def _fold_module_pairs(gm) -> int:
    """Fold ``call_module`` Conv -> BatchNorm pairs of a traced module (in place)."""
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    g, n = gm.graph, 0
    for bn_node in list(g.nodes):
        if bn_node.op != "call_module":
            continue
        bn = gm.get_submodule(bn_node.target)
        if (not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.training
                or bn.running_mean is None or len(bn_node.args) != 1 or bn_node.kwargs):
            continue
        conv_node = bn_node.args[0]
        if getattr(conv_node, "op", None) != "call_module" or len(conv_node.users) != 1:
            continue
        conv = gm.get_submodule(conv_node.target)
        if (type(conv) not in convs or conv.padding_mode != "zeros" or isinstance(conv.padding, str)
                or len(conv_node.args) != 1 or conv_node.kwargs):
            continue
        with g.inserting_before(bn_node):
            attrs = [None if getattr(m, k) is None else g.get_attr(f"{t}.{k}")
                     for m, t, k in ((conv, conv_node.target, "weight"), (conv, conv_node.target, "bias"),
                                     (bn, bn_node.target, "weight"), (bn, bn_node.target, "bias"),
                                     (bn, bn_node.target, "running_mean"), (bn, bn_node.target, "running_var"))]
            new = g.call_function(_conv_bn, (conv_node.args[0], *attrs, float(bn.eps), tuple(conv.stride),
                                             tuple(conv.padding), tuple(conv.dilation), int(conv.groups)))
        bn_node.replace_all_uses_with(new)
        g.erase_node(bn_node)
        g.erase_node(conv_node)
        n += 1
    return n


def fold_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode BatchNorm into the convolution feeding it (graphs only: ``aten``
    nodes of an exported program, or Conv/BatchNorm module calls of a traced module; in
    place); returns how many were folded."""
    if not isinstance(model, torch.fx.GraphModule):
        return 0
    import operator

    n_modules = _fold_module_pairs(model)
    if n_modules:
        model.recompile()

    aten = torch.ops.aten
    convs = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default}
    g, n = model.graph, 0
    for bn in list(g.nodes):
        if bn.op != "call_function" or bn.target is not aten.batch_norm.default or bn.kwargs:
            continue
        conv = bn.args[0]
        if (getattr(conv, "op", None) != "call_function" or conv.target not in convs or conv.kwargs
                or len(conv.users) != 1 or len(conv.args) < 2):
            continue
        _, gamma, beta, mean, var, training, _, eps = bn.args[:8]
        if training or mean is None or var is None:
            continue
        c = conv.args[2] if len(conv.args) > 2 else None
        with g.inserting_before(bn):
            fold = g.call_function(_bn_fold, (conv.args[1], c, gamma, beta, mean, var, float(eps)))
            w2 = g.call_function(operator.getitem, (fold, 0))
            c2 = g.call_function(operator.getitem, (fold, 1))
            new = g.call_function(conv.target, (conv.args[0], w2, c2, *conv.args[3:]))
        bn.replace_all_uses_with(new)
        g.erase_node(bn)
        g.erase_node(conv)
        n += 1
    if n:
        model.recompile()
    return n + n_modules


def inplace_activations(model: nn.Module) -> int:
    """Turn ``relu(t)``/``tanh(t)`` into ``relu_(t)``/``tanh_(t)`` where ``t`` is a new tensor
    computed by an ``aten`` op (exported graphs) or by a Conv, Linear or BatchNorm module
    (traced modules) and used only by the activation (in place); returns how many nodes
    changed."""
    if not isinstance(model, torch.fx.GraphModule):
        return 0
    aten = torch.ops.aten
    swap = {aten.relu.default: aten.relu_.default, aten.tanh.default: aten.tanh_.default}
    n = 0
    for node in model.graph.nodes:
        if _fresh_module_output(model, node):  # a traced module's activation
            node.op, node.target = "call_function", torch.relu_ if _is_relu(model, node) else torch.tanh_
            node.kwargs = {}
            n += 1
            continue
        if node.op != "call_function" or node.target not in swap or len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if (getattr(src, "op", None) == "call_function" and isinstance(src.target, torch._ops.OpOverload)
                and len(src.users) == 1 and not src.target._schema.is_mutable
                and all(r.alias_info is None for r in src.target._schema.returns)):  # a new tensor, no view
            node.target = swap[node.target]
            n += 1
    if n:
        model.recompile()
    return n


def _is_relu(gm, node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), nn.ReLU)
    return node.target in (torch.relu, torch.nn.functional.relu)


def _fresh_module_output(gm, node) -> bool:
    """A traced module's ReLU/Tanh (module or ``torch.relu``/``F.relu``/``torch.tanh``
    call) whose input is a new tensor made by a Conv, Linear, BatchNorm or folded
    convolution and used by nothing else."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if type(m) not in (nn.ReLU, nn.Tanh) or len(node.args) != 1 or node.kwargs:
            return False
    elif node.op == "call_function" and node.target in (torch.relu, torch.tanh, torch.nn.functional.relu):
        if len(node.args) != 1 or node.kwargs.get("inplace", False) or set(node.kwargs) - {"inplace"}:
            return False
    else:
        return False
    src = node.args[0]
    if getattr(src, "op", None) == "call_module":
        fresh = isinstance(gm.get_submodule(src.target), (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                                          nn.modules.batchnorm._BatchNorm))
    else:
        fresh = getattr(src, "op", None) == "call_function" and src.target is _conv_bn
    return fresh and len(src.users) == 1


def _graph_of(model):
    """The ``GraphModule`` of an exported program (unwrapping a fixed-batch wrapper), or None."""
    inner = getattr(model, "program", model)
    return inner if isinstance(inner, torch.fx.GraphModule) else None


def mlp_from_graph(model: nn.Module, n_features: int):
    """``(nn.Sequential, parameter names in its order)`` computing the same function as an
    exported graph made only of ``linear`` nodes and ``relu``/``tanh``/``gelu`` activations
    (optionally after ``flatten(x, 1)`` or a view to ``[-1, n_features]`` of its ``[N,
    n_features]`` input), ending on a ``linear``; None for any other graph. Every parameter
    must be used exactly once; the graph must hold no buffers."""
    gm = _graph_of(model)
    if gm is None or any(True for _ in gm.buffers()):
        return None
    aten = torch.ops.aten
    acts = {aten.relu.default: nn.ReLU, aten.tanh.default: nn.Tanh, aten.gelu.default: nn.GELU}
    params = dict(gm.named_parameters())
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    current, layers, names, started = inputs[0], [], [], False
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            continue
        if node.op == "call_module" and node.target == "_guards_fn":
            continue  # the program's input-shape guard, no computation
        if node.op == "output":
            out = node.args[0]
            out = out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else out
            ok = out is current and layers and isinstance(layers[-1], nn.Linear)
            if not ok or len(names) != len(params):
                return None
            return nn.Sequential(*layers), names
        if node.op != "call_function" or not node.args or node.args[0] is not current:
            return None
        t, args = node.target, node.args
        if not started and not node.kwargs and (
                (t is aten.flatten.using_ints and tuple(args[1:]) in ((1,), (1, -1)))
                or (t in (aten.view.default, aten.reshape.default)
                    and list(args[1]) in ([-1, n_features],))):
            current = node
            continue
        if t is aten.linear.default and not node.kwargs:
            w, b = args[1], (args[2] if len(args) > 2 else None)
            attrs = [a for a in (w, b) if a is not None]
            if any(getattr(a, "op", None) != "get_attr" or a.target not in params
                   or len(a.users) != 1 for a in attrs):
                return None
            W = params[w.target]
            lin = nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=W.dtype)
            names += [a.target for a in attrs]
            layers.append(lin)
        elif t in acts and len(args) == 1 and (t is not aten.gelu.default or not node.kwargs
                                               or node.kwargs == {"approximate": "none"}):
            if not layers or not isinstance(layers[-1], nn.Linear):
                return None  # two activations in a row
            layers.append(acts[t]())
        else:
            return None
        started, current = True, node
    return None
