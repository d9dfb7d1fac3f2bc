"""Loss and accuracy at points ``w + a*dx + b*dy`` of a parameter plane: the hot path.

This is the one place where "the loss at one surface point" is computed; every executor
(this thread, worker processes, Ray tasks, batched ``vmap``) builds its evaluator here, so
their numbers are the same numbers. Each point costs one forward pass over the evaluation
data. Three strategies, chosen by measurement (see ``benchmarks/surface_speed.py``):

- :class:`MLPEvaluator` (CPU, ``nn.Sequential`` of ``Linear`` + elementwise activations):
  a hand-written forward with every buffer allocated once and in-place ops, a fused
  log-sum-exp cross-entropy, and the first-layer factorisation
  ``X (W + a Dx + b Dy)^T = XW^T + a XDx^T + b XDy^T`` (three products once per plane,
  one axpy per point).
- :class:`ModuleEvaluator` (any module, e.g. CNNs, exported programs): one private copy
  of the model whose parameters are overwritten in place at each point
  (``p <- w + a dx + b dy``), never a copy per point. Optionally recomputes BatchNorm
  running statistics at every point (one train-mode pass over the data, cumulative
  average), as in the mode-connectivity work.
- :func:`evaluate_points_vmap` (GPU): many points at once with ``torch.func.vmap`` over
  stacked parameter sets ``[B, P]``, because tiny per-point kernels are launch-bound on a
  GPU. It keeps the BatchNorm statistics.

:func:`build_evaluator` picks the per-point evaluator; :class:`ChunkEvaluator` evaluates a
list of points with the per-point evaluator or, batched, with ``vmap``. Everything is
built from a picklable :class:`PlaneTask`, so worker processes build the same evaluator
as the local path and the results are identical.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.core import losses
from landscape.surface.rewrites import (
    NotFactorable,
    fold_batchnorm,
    inplace_activations,
    install_first_layer,
    mlp_from_graph,
    trace_module,
)

FAST_ACTS = (nn.ReLU, nn.Tanh, nn.GELU, nn.Identity)


@dataclass
class PlaneTask:
    """Everything needed to evaluate points of one plane (picklable).

    ``w``, ``dx``, ``dy``: flat ``[P]`` in the model's parameter order (``dy`` may be all
    zero for a 1-D slice); ``X`` [N, ...], ``y`` [N]; ``bn_data`` the inputs used to
    recompute BatchNorm statistics when ``bn == "recompute"``; ``method``: ``auto``,
    ``mlp``, ``module`` (per point) or ``vmap`` (batched over points)."""

    model: nn.Module
    w: torch.Tensor
    dx: torch.Tensor
    dy: torch.Tensor
    X: torch.Tensor
    y: torch.Tensor
    loss: str = "cross_entropy"
    bn: str = "keep"
    bn_data: torch.Tensor | None = None
    method: str = "auto"

    def __getstate__(self):
        """An exported program cannot be pickled: ship its archive bytes (kept by
        :func:`landscape.io.checkpoints.program_from_bytes` as ``model.landscape_pt2``) and its
        buffers instead; the receiving process loads the program once from the bytes."""
        state = dict(self.__dict__)
        source = getattr(self.model, "landscape_pt2", None)
        if isinstance(source, bytes):
            buffers = {k: v.detach().cpu().clone() for k, v in self.model.named_buffers()}
            state["model"] = ProgramBytes(source, buffers)
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model"), ProgramBytes):
            state = dict(state, model=state["model"].load())
        self.__dict__.update(state)


class ProgramBytes:
    """A ``torch.export`` archive as bytes plus the module's buffers, for shipping a task to
    another process. :meth:`load` reads it under the pickle-refusing guard of
    :mod:`landscape.io.checkpoints` (once per process per archive: the last one is cached)."""

    _cache: dict = {}

    def __init__(self, source: bytes, buffers: dict):
        self.source, self.buffers = source, buffers

    def load(self) -> nn.Module:
        import hashlib

        from landscape.io.checkpoints import program_from_bytes

        key = hashlib.sha256(self.source).hexdigest()
        module = ProgramBytes._cache.get(key)
        if module is None:
            module, _ = program_from_bytes(self.source)
            ProgramBytes._cache.clear()
            ProgramBytes._cache[key] = module
        with torch.no_grad():
            for k, b in module.named_buffers():
                if k in self.buffers:
                    b.copy_(self.buffers[k])
        return module


def is_fast_mlp(model: nn.Module) -> bool:
    """True for an ``nn.Sequential`` of distinct ``Linear`` layers, each followed by at most
    one elementwise activation, starting and ending with ``Linear``."""
    if type(model) is not nn.Sequential or len(model) == 0:
        return False
    mods = list(model)
    if not isinstance(mods[0], nn.Linear) or not isinstance(mods[-1], nn.Linear):
        return False
    if len({id(m) for m in mods}) != len(mods):  # a module used twice (tied weights)
        return False
    for prev, m in zip(mods, mods[1:]):
        if not isinstance(prev, nn.Linear) and not isinstance(m, nn.Linear):
            return False  # two activations in a row: the fast forward applies one
    for m in mods:
        if not isinstance(m, (nn.Linear, *FAST_ACTS)):
            return False
        if isinstance(m, nn.GELU) and m.approximate != "none":
            return False
    return all(p.requires_grad for p in model.parameters())


def build_evaluator(task: PlaneTask):
    """The evaluator for a task: the MLP fast path when it applies (an ``nn.Sequential`` MLP,
    or an exported program that is one, see :func:`mlp_task`), else the generic one."""
    method = task.method
    if method == "auto":
        method = "module"
        if task.X.dim() == 2 and task.X.device.type == "cpu":
            if is_fast_mlp(task.model):
                method = "mlp"
            else:
                as_mlp = mlp_task(task)
                if as_mlp is not None:
                    ev = MLPEvaluator(as_mlp)
                    ev.fast_path = "mlp-from-graph+first-layer"
                    return ev
    if method == "mlp":
        return MLPEvaluator(task)
    return ModuleEvaluator(task)


def mlp_task(task: PlaneTask) -> PlaneTask | None:
    """The task restated on the ``nn.Sequential`` an exported MLP program is equivalent to
    (:func:`~landscape.surface.rewrites.mlp_from_graph`), its flat ``w``, ``dx``, ``dy``
    reordered to the Sequential's parameter order; None when the program is not such an MLP
    or BatchNorm statistics are to be recomputed."""
    if task.bn == "recompute" or not hasattr(task.model, "landscape_pt2"):
        return None
    found = mlp_from_graph(task.model, task.X.shape[1])
    if found is None:
        return None
    seq, order = found
    moving = [(n, p) for n, p in (getattr(task.model, "program", task.model)).named_parameters()
              if p.requires_grad]
    if len(moving) != len(order):
        return None
    slices, start = {}, 0
    for n, p in moving:
        slices[n] = (start, start + p.numel())
        start += p.numel()
    if start != task.w.numel():
        return None
    index = torch.cat([torch.arange(*slices[n]) for n in order])
    same = bool(torch.equal(index, torch.arange(start)))
    w, dx, dy = ((task.w, task.dx, task.dy) if same
                 else (task.w[index], task.dx[index], task.dy[index]))
    return dataclasses.replace(task, model=seq, w=w, dx=dx, dy=dy, method="mlp")


class ModuleEvaluator:
    """Generic per-point evaluation on one private copy of the model.

    With ``fast`` (the default, off when BatchNorm statistics are recomputed), two exact
    rewrites are tried on the copy and kept only if the output at a trial point equals the
    plain forward's (to 1e-9 relative in float64, 1e-4 in float32):

    - the first-layer factorisation (:class:`FirstLayer`) when the first parametrised layer
      is ``Linear`` or ``Conv`` (a submodule of an ``nn.Module``, or an ``aten`` linear or
      convolution node of an exported program's graph);
    - BatchNorm folding: ``batch_norm(conv(x, W, c))`` in eval mode becomes
      ``conv(x, W s, (c - mu) s + beta)`` with ``s = gamma / sqrt(var + eps)``, computed
      from the current parameters at every forward (a few tiny ops instead of a pass over
      the activations); on an exported graph, or on an ``nn.Module`` traced by ``torch.fx``;
    - in-place activations: a ReLU or tanh whose input is a fresh result used by nothing
      else overwrites it.

    ``fast_path`` names what was applied (``"first-layer"``, ``"bn-fold"``, ``"in-place"``,
    joined by ``+``, or ``"none"``)."""

    name = "module"

    def __init__(self, task: PlaneTask, fast: bool = True):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            self.model = copy.deepcopy(task.model)
            spare = copy.deepcopy(self.model) if fast else None
        _eval(self.model)
        self.task = task
        self.X, self.y, self.loss = task.X, task.y, task.loss
        self.score = Scorer(task.y, task.loss)
        self.bn = task.bn
        self.bn_data = task.bn_data if task.bn_data is not None else task.X
        self.bn_modules = [m for m in self.model.modules()
                           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.slices = {}
        start = 0
        for n, p in self.model.named_parameters():
            if p.requires_grad:
                self.slices[n] = slice(start, start + p.numel())
                start += p.numel()
        self.first, self.fast_path = None, "none"
        self._bind(self.model, ())
        if fast and not (self.bn == "recompute" and self.bn_modules):
            self._try_fast(spare)

    def _bind(self, model, skip) -> None:
        """Views of ``w``, ``dx``, ``dy`` for every moving parameter of ``model`` not in ``skip``."""
        task = self.task
        self.params, self.views = [], []
        for n, p in model.named_parameters():
            if n not in self.slices or n in skip:
                continue
            p.requires_grad_(False)
            sl = self.slices[n]
            self.params.append(p)
            self.views.append((task.w[sl].view_as(p), task.dx[sl].view_as(p),
                               task.dy[sl].view_as(p), bool(task.dy[sl].any())))

    @torch.no_grad()
    def _try_fast(self, model) -> None:
        a, b = 0.37, (-0.29 if bool(self.task.dy.any()) else 0.0)
        self.set_point(a, b)
        ref = self.model(self.X)
        plain = (self.model, self.params, self.views)
        try:
            _eval(model)
            first, skip = install_first_layer(model, self.task, self.slices)
            model = trace_module(model) or model  # graph rewrites for modules too
            folded = fold_batchnorm(model)
            inplace = inplace_activations(model)
            if first is None and not folded and not inplace:
                return
            self.model, self.first = model, first
            self._bind(model, skip)
            self.set_point(a, b)
            out = self.model(self.X)
            tol = 1e-9 if out.dtype == torch.float64 else 1e-4
            ok = out.shape == ref.shape and bool(torch.allclose(out, ref, rtol=tol, atol=tol * float(ref.abs().max())))
        except Exception:  # noqa: BLE001 - any surprise keeps the plain forward
            ok = False
        if ok:
            self.plain = plain
            self.fast_path = "+".join(["first-layer"] * (first is not None) + ["bn-fold"] * bool(folded)
                                      + ["in-place"] * bool(inplace))
        else:
            self._plain(plain)

    def _plain(self, plain) -> None:
        self.model, self.params, self.views = plain
        self.first, self.fast_path = None, "none"

    @torch.no_grad()
    def set_point(self, a: float, b: float) -> None:
        for p, (w, dx, dy, has_dy) in zip(self.params, self.views):
            torch.add(w, dx, alpha=a, out=p.data)
            if has_dy and b != 0.0:
                p.data.add_(dy, alpha=b)
        if self.first is not None:
            self.first.set_point(a, b)
        if self.bn == "recompute" and self.bn_modules:
            self._recompute_bn()

    @torch.no_grad()
    def _recompute_bn(self, batch: int = 512) -> None:
        saved = [(m.momentum, m.training) for m in self.bn_modules]
        for m in self.bn_modules:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
            m.train()
        for i in range(0, self.bn_data.shape[0], batch):
            self.model(self.bn_data[i:i + batch])
        for m, (mom, _) in zip(self.bn_modules, saved):
            m.momentum = mom
            m.eval()

    @torch.no_grad()
    def __call__(self, a: float, b: float = 0.0) -> tuple[float, float]:
        self.set_point(a, b)
        try:
            out = self.model(self.X)
        except NotFactorable:  # the first layer's input moved: back to the plain forward
            self._plain(self.plain)
            self.set_point(a, b)
            out = self.model(self.X)
        return self.score(out)


class Scorer:
    """``(loss, accuracy)`` of outputs ``z`` [N, C] against the task's labels, as Python floats.

    Cross-entropy is fused and reuses its buffers across calls (``F.cross_entropy`` on
    ``[1797, 10]`` costs several times more than the model's last layer on one thread):
    ``m = max_c z``, ``loss = mean_i [m_i + log sum_c exp(z_ic - m_i) - z_iy]``; an example
    counts as correct when ``z_iy`` is the largest logit (ties counted correct, a set of
    measure zero). Other losses go through :mod:`landscape.core.losses`."""

    def __init__(self, y: torch.Tensor, loss: str):
        self.y, self.loss = y, loss
        self.y_col = y.view(-1, 1).long() if not y.is_floating_point() else None
        self.mx = self.tmp = None

    def __call__(self, z: torch.Tensor) -> tuple[float, float]:
        if self.loss != "cross_entropy" or z.dim() != 2 or self.y_col is None:
            return losses.loss(z, self.y, self.loss).item(), losses.accuracy(z, self.y)
        if self.tmp is None or self.tmp.shape != z.shape or self.tmp.dtype != z.dtype:
            self.mx = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
            self.tmp = torch.empty_like(z)
        torch.amax(z, 1, out=self.mx)
        torch.sub(z, self.mx[:, None], out=self.tmp)
        lse = self.tmp.exp_().sum(1).log_().add_(self.mx)
        zy = z.gather(1, self.y_col).squeeze(1)
        loss = lse.sub_(zy).mean().item()
        acc = (zy >= self.mx).sum().item() / z.shape[0]
        return loss, acc


def _eval(module: nn.Module) -> None:
    try:
        module.eval()
    except Exception:  # noqa: BLE001 - an exported module may refuse .eval(); it is in eval mode
        pass


class MLPEvaluator:
    """Hand-written forward for ``Linear``/activation stacks with buffers allocated once."""

    name = "mlp"
    fast_path = "first-layer"  # "mlp-from-graph+first-layer" for an exported MLP program

    def __init__(self, task: PlaneTask):
        mods = list(task.model)
        X = task.X.to(task.w.dtype)
        self.loss = task.loss
        self.y = task.y
        self.n = X.shape[0]
        start = 0
        layers = []  # (W, dWx, dWy, b, dbx, dby) views, act
        pending = None
        for m in mods:
            if isinstance(m, nn.Linear):
                out_f, in_f = m.weight.shape
                sw = slice(start, start + out_f * in_f)
                start += out_f * in_f
                W = [t[sw].view(out_f, in_f) for t in (task.w, task.dx, task.dy)]
                if m.bias is not None:
                    sb = slice(start, start + out_f)
                    start += out_f
                    B = [t[sb] for t in (task.w, task.dx, task.dy)]
                else:
                    B = [torch.zeros(out_f, dtype=task.w.dtype)] * 3
                pending = {"W": W, "B": B, "act": None}
                layers.append(pending)
            else:
                pending["act"] = m
        self.layers = layers
        # First-layer factorisation: three products per plane.
        W0, Dx0, Dy0 = layers[0]["W"]
        b0, dbx0, dby0 = layers[0]["B"]
        self.XW = torch.addmm(b0, X, W0.T)
        self.XDx = torch.addmm(dbx0, X, Dx0.T)
        self.XDy = torch.addmm(dby0, X, Dy0.T)
        self.has_dy = bool(task.dy.any())
        # Row cache: XWb = XW + b XDy for the last b, so points of one grid row cost one axpy.
        self.XWb = self.XW.clone()
        self._b = 0.0
        self.h = [torch.empty(self.n, L["W"][0].shape[0], dtype=X.dtype) for L in layers]
        self.Wbuf = [torch.empty_like(L["W"][0]) for L in layers]
        self.Bbuf = [torch.empty_like(L["B"][0]) for L in layers]
        self.bias_moves = [bool(L["B"][1].any() or L["B"][2].any()) for L in layers]
        self.score = Scorer(task.y, task.loss)

    @staticmethod
    def _act_(m, h):
        if m is None or isinstance(m, nn.Identity):
            return
        if isinstance(m, nn.ReLU):
            h.relu_()
        elif isinstance(m, nn.Tanh):
            h.tanh_()
        else:
            h.copy_(torch.nn.functional.gelu(h))

    @torch.no_grad()
    def __call__(self, a: float, b: float = 0.0) -> tuple[float, float]:
        h = self.h[0]
        if self.has_dy and b != self._b:
            torch.add(self.XW, self.XDy, alpha=b, out=self.XWb)
            self._b = b
        torch.add(self.XWb, self.XDx, alpha=a, out=h)
        self._act_(self.layers[0]["act"], h)
        for i in range(1, len(self.layers)):
            L = self.layers[i]
            W, dWx, dWy = L["W"]
            Wb = self.Wbuf[i]
            torch.add(W, dWx, alpha=a, out=Wb)
            if self.has_dy and b != 0.0:
                Wb.add_(dWy, alpha=b)
            bias = L["B"][0]
            if self.bias_moves[i]:
                bias = self.Bbuf[i]
                torch.add(L["B"][0], L["B"][1], alpha=a, out=bias)
                bias.add_(L["B"][2], alpha=b)
            torch.addmm(bias, h, Wb.T, out=self.h[i])
            h = self.h[i]
            self._act_(L["act"], h)
        return self.score(h)

@torch.no_grad()
def evaluate_points_vmap(task: PlaneTask, points, batch: int = 64):
    """Loss and accuracy at many ``points`` [(a, b), ...] at once with ``torch.func.vmap``.

    Builds a ``[B, P]`` stack of parameter vectors per batch and runs the model once on
    all of them (for GPUs; on a CPU the per-point evaluators are faster). BatchNorm
    statistics are kept (``bn="keep"``). Returns two lists of floats."""
    from torch.func import functional_call, vmap

    model = copy.deepcopy(task.model).eval()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for n, p in model.named_parameters() if p.requires_grad]
    sizes = [s.numel() for s in shapes]
    buffers = dict(model.named_buffers())

    def loss_at(flat):
        parts = torch.split(flat, sizes)
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        out = functional_call(model, (params, buffers), (task.X,))
        if task.loss == "cross_entropy":
            lse = torch.logsumexp(out, 1)
            zy = out.gather(1, task.y.view(-1, 1)).squeeze(1)
            return (lse - zy).mean(), (zy >= out.amax(1)).to(out.dtype).mean()
        return losses.loss(out, task.y, task.loss), torch.full((), float("nan"))

    f = vmap(loss_at)
    out_l, out_a = [], []
    pts = torch.as_tensor(points, dtype=task.w.dtype, device=task.w.device)
    for i in range(0, len(pts), batch):
        ab = pts[i:i + batch]
        thetas = task.w + ab[:, :1] * task.dx + ab[:, 1:2] * task.dy
        l, a = f(thetas)
        out_l += l.tolist()
        out_a += a.tolist()
    return out_l, out_a


def task_to(task: PlaneTask, device) -> PlaneTask:
    """A copy of ``task`` with its model and tensors on ``device`` (the task itself when they
    are there already)."""
    dev = torch.device(device)

    def there(t):
        return t.device.type == dev.type and (dev.index is None or t.device.index == dev.index)

    if there(task.w) and there(task.X):
        return task

    def mv(t):
        return None if t is None else t.to(dev)

    model = copy.deepcopy(task.model).to(dev)
    return dataclasses.replace(task, model=model, w=mv(task.w), dx=mv(task.dx), dy=mv(task.dy),
                               X=mv(task.X), y=mv(task.y), bn_data=mv(task.bn_data))


class ChunkEvaluator:
    """Loss and accuracy at a list of points on ``device``: the per-point evaluator of
    :func:`build_evaluator`, or with ``batched`` (the default off a CPU, or for a task whose
    ``method`` is ``"vmap"``) :func:`evaluate_points_vmap`.
    Calling it returns two float64 arrays ``(loss [n], acc [n])``; ``name`` is the method
    (``mlp``, ``module`` or ``vmap``)."""

    def __init__(self, task: PlaneTask, device="cpu", batched: bool | None = None, vmap_batch: int = 64):
        self.task = task_to(task, device)
        self.vmap_batch = int(vmap_batch)
        if batched is None:
            batched = torch.device(device).type != "cpu" or task.method == "vmap"
        self.batched = bool(batched)
        self.ev = None if self.batched else build_evaluator(self.task)
        self.name = "vmap" if self.batched else self.ev.name
        self.device = str(device)

    def __call__(self, points) -> tuple[np.ndarray, np.ndarray]:
        if self.batched:
            loss, acc = evaluate_points_vmap(self.task, points, self.vmap_batch)
            return np.asarray(loss, np.float64), np.asarray(acc, np.float64)
        vals = [self.ev(a, b) for a, b in points]
        return (np.asarray([v[0] for v in vals], np.float64),
                np.asarray([v[1] for v in vals], np.float64))
