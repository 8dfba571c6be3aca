"""The `learner` command: `learner train [DATA_DIR]` (the main job) and `learner predict MODEL IMAGE...`."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ['main', 'default_data_dir']


def default_data_dir() -> Path:
    """The embedded shapes data set in the repository's `data/` folder (the main job's default)."""
    return Path(__file__).resolve().parents[1] / 'data' / 'shapes'


def _valid_name(data_dir: Path) -> str:
    for name in ('valid', 'val', 'test'):
        if (data_dir / name).is_dir():
            return name
    raise SystemExit(f'{data_dir} has no valid/ (or val/) folder: expected DATA_DIR/train/<class>/* and '
                     'DATA_DIR/valid/<class>/*')


def _pick_lr(suggestions, fallback: float = 1e-2) -> float:
    """A learning rate from lr_find's suggestions (min-loss/10, else steepest), kept inside [1e-3, 1e-1]
    (a short or noisy sweep can suggest absurdly small values; the head of a pretrained net wants ~1e-2)."""
    if hasattr(suggestions, '_asdict'):
        suggestions = suggestions._asdict()
    if isinstance(suggestions, dict):
        values = [suggestions.get('min_div10'), suggestions.get('steep')]
    elif isinstance(suggestions, (tuple, list)):
        values = list(suggestions)
    else:
        values = []
    values = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    lr = values[0] if values else fallback
    return float(min(max(lr, 1e-3), 1e-1))


def train(args: argparse.Namespace) -> dict:
    """lr_find -> 1cycle frozen -> 1cycle unfrozen with differential lrs -> TTA; saves the model and plots."""
    import matplotlib
    matplotlib.use('Agg')
    import torch
    from .conv_learner import ConvLearner
    from .data.databunch import ImageClassifierData
    from .data.transforms import tfms_from_model, transforms_side_on
    from .interpret import ClassificationInterpretation
    from .metrics import accuracy_np

    torch.manual_seed(args.seed); np.random.seed(args.seed)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if not (data_dir / 'train').is_dir():
        raise SystemExit(f'{data_dir} has no train/ folder: expected DATA_DIR/train/<class>/* (ImageNet layout)')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    tfms = tfms_from_model(args.arch, args.size, aug_tfms=transforms_side_on, max_zoom=1.1)
    data = ImageClassifierData.from_paths(data_dir, tfms=tfms, bs=args.bs, val_name=_valid_name(data_dir),
                                          num_workers=args.workers)
    # the frozen phase trains the head on cached body activations (fast); the unfrozen phase runs the whole model
    learn = ConvLearner.pretrained(args.arch, data, pretrained=not args.no_pretrained, precompute=True,
                                   progress=not args.quiet)
    learn.path = out

    print(f'data: {data_dir} ({len(data.trn_ds)} train, {len(data.val_ds)} valid, {data.c} classes)')
    suggestions = learn.lr_find(num_it=args.lr_find_iters)
    lr = args.lr if args.lr else _pick_lr(suggestions)
    learn.sched.plot().savefig(out / 'lr_find.png')
    print(f'lr_find suggests {suggestions}; using max_lr={lr:.2e}')

    learn.fit_one_cycle(args.epochs, max_lr=lr)
    frozen_acc = _accuracy(learn, accuracy_np)
    if args.unfrozen_epochs:
        learn.precompute = False
        learn.unfreeze()
        # the pretrained body wants far smaller steps than the new head did (measured: lr/10 on the head undoes it)
        learn.fit_one_cycle(args.unfrozen_epochs, max_lr=slice(lr / 1000, lr / 100))
    plain_acc = _accuracy(learn, accuracy_np)
    log_preds, y = learn.TTA(n_aug=args.tta)
    tta_acc = accuracy_np(np.mean(np.exp(log_preds), 0), y)

    learn.recorder.plot_loss().savefig(out / 'losses.png')
    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix().savefig(out / 'confusion_matrix.png')
    model_path = learn.export(out / 'model.pth')
    results = {'frozen accuracy': frozen_acc, 'final accuracy': plain_acc, f'TTA accuracy (n_aug={args.tta})': tta_acc,
               'max_lr': lr, 'seconds': time.perf_counter() - started}
    print('\n' + '\n'.join(f'{k:28s} {v:.4f}' for k, v in results.items()))
    print(f'model: {model_path}\nplots: {out}/lr_find.png, losses.png, confusion_matrix.png')
    return results


def _accuracy(learn, accuracy_np) -> float:
    log_preds, y = learn.predict_with_targs()
    return float(accuracy_np(np.exp(log_preds), y))


def predict(args: argparse.Namespace) -> None:
    """Print the top classes of each image for an exported model."""
    from .export import load_learner
    inference = load_learner(args.model)
    probs = inference.predict_probs(args.images)
    for image, p in zip(args.images, probs):
        top = np.argsort(-p)[:args.top]
        print(f'{image}: ' + ', '.join(f'{inference.classes[i]} {p[i]:.3f}' for i in top))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='learner', description='Train and use image classifiers.')
    sub = parser.add_subparsers(dest='command', required=True)
    t = sub.add_parser('train', help='transfer-learn a classifier on an ImageNet-layout folder')
    t.add_argument('data_dir', nargs='?', help='DATA_DIR with train/<class>/* and valid/<class>/* '
                   '(default: the embedded shapes data in data/shapes)')
    t.add_argument('--arch', default='efficientnet_lite0', help='backbone name (default: efficientnet_lite0)')
    t.add_argument('--size', type=int, default=224, help='image size in pixels (default: 224)')
    t.add_argument('--bs', type=int, default=32, help='batch size (default: 32)')
    t.add_argument('--epochs', type=int, default=3, help='1cycle epochs with the body frozen (default: 3)')
    t.add_argument('--unfrozen-epochs', type=int, default=1, help='1cycle epochs unfrozen, differential lrs (default: 1)')
    t.add_argument('--lr', type=float, default=None, help='max learning rate (default: from lr_find)')
    t.add_argument('--lr-find-iters', type=int, default=50, help='lr_find iterations (default: 50)')
    t.add_argument('--tta', type=int, default=4, help='augmented passes for TTA (default: 4)')
    t.add_argument('--workers', type=int, default=None, help='data loader worker processes')
    t.add_argument('--out', default='out', help='output folder for the model and plots (default: out)')
    t.add_argument('--seed', type=int, default=0)
    t.add_argument('--no-pretrained', action='store_true', help='random initial weights (no download needed)')
    t.add_argument('--quiet', action='store_true', help='no progress bars')
    p = sub.add_parser('predict', help='print the top classes of images for an exported model')
    p.add_argument('model', help='a model file written by `learner train` (or learn.export)')
    p.add_argument('images', nargs='+', help='image files')
    p.add_argument('--top', type=int, default=3, help='how many classes to print (default: 3)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `learner` console script and `python -m learner`."""
    args = build_parser().parse_args(argv)
    if args.command == 'train':
        train(args)
    else:
        predict(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
