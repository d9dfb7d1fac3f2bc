"""``landscape train``: train a preset or a zoo model and write a checkpoint."""

from __future__ import annotations

import time

from landscape.cli.common import add_model_args
from landscape.core.errors import LandscapeError

NAME = "train"


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a preset or a zoo model; write a checkpoint")
    add_model_args(t)
    t.add_argument("--model", help="zoo spec JSON, e.g. '{\"name\": \"mlp\", \"args\": {...}}'")
    t.add_argument("--optimizer", choices=["gd", "sgd", "momentum", "adam"])
    t.add_argument("--lr", type=float)
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int, help="0 = full batch")
    t.add_argument("--seed", type=int)
    t.add_argument("--snapshot-every", type=int)
    t.add_argument("--out", help="checkpoint path (.safetensors); the trajectory goes beside it")


def run(args) -> dict:
    from landscape import presets
    from landscape.core import data, models
    from landscape.core.train import TrainConfig, train

    t0 = time.perf_counter()
    if args.preset:
        p = presets.get(args.preset)
        model, d = presets.make(args.preset)
        cfg = TrainConfig.from_dict(p.train.to_dict())
        data_spec, model_spec = p.data, p.model
    else:
        if not (args.data and args.model):
            raise LandscapeError("give --preset NAME, or --data and --model (a zoo spec)")
        d = data.load(args.data)
        model = models.build(args.model, seed=args.seed or 0)
        cfg = TrainConfig(loss=args.loss or ("cross_entropy" if d.is_classification else "mse"))
        data_spec, model_spec = args.data, models.spec_of(model)
    for key, val in (("optimizer", args.optimizer), ("lr", args.lr), ("steps", args.steps),
                     ("seed", args.seed), ("loss", args.loss), ("snapshot_every", args.snapshot_every)):
        if val is not None:
            setattr(cfg, key, val)
    if args.batch_size is not None:
        cfg.batch_size = None if args.batch_size == 0 else args.batch_size
    if args.seed is not None and args.preset:
        model = models.build(model_spec, seed=args.seed)
    from landscape.core.data import check_fits

    check_fits(models.output_size(model, d.input_shape), d)
    tr = train(model, d, cfg)
    loss, acc = tr.evaluate()
    out = None
    if args.out:
        from landscape.io import checkpoints as checkpoint

        recipe = {"data": data_spec, "model": model_spec, "train": cfg.to_dict()}
        out = checkpoint.save(tr.model, args.out, data=data_spec, recipe=recipe)
        presets.save_trajectory(out, tr)
        out = str(out)
    res = {"out": out, "final_loss": loss, "final_accuracy": acc, "steps": tr.step,
           "n_params": sum(p.numel() for p in tr.model.parameters()),
           "seconds": round(time.perf_counter() - t0, 3)}
    if not args.json:
        print(f"trained {res['steps']} steps: loss {loss:.4g}, accuracy {acc:.3f}"
              + (f" -> {out}" if out else ""))
    return res
