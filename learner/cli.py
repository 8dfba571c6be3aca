"""The `learner` command: `learner train [DATA_DIR]` (the main job), `learner predict MODEL IMAGE...`,
`learner serve MODEL` (the prediction service and its quick-test page) and `learner studio` (the Custom Vision-style
studio: see learner/studio/cli.py)."""
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
    """lr_find -> 1cycle frozen (head on cached features) -> 1cycle unfrozen with differential lrs -> TTA; exports
    the phase that did best on validation, with the plots.

    The unfrozen phase holds the body's BatchNorm statistics (`bn_freeze`) when batches are small: with 32 images
    a batch, statistics re-estimated per batch replace ImageNet's with noisy ones, and the head, trained on features
    computed with ImageNet's, meets different ones (measured on the embedded data: train loss jumped from 0.1 to 3.7
    and validation accuracy fell from 1.00 to 0.94). Whatever happens, a phase that ends worse on validation than
    the one before it is undone: the job never exports a model worse than one it already had.
    """
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
    phases = [_phase('frozen', learn.recorder)]  # the recorder keeps only the last fit: keep each phase's record
    best = frozen = _Checkpoint('frozen', learn, accuracy_np)
    print(f'frozen phase: validation accuracy {frozen.accuracy:.4f}')
    if args.unfrozen_epochs:
        learn.precompute = False
        learn.unfreeze()
        if args.bs < 64:
            learn.bn_freeze(True)
        head_lr = args.unfrozen_lr if args.unfrozen_lr else lr / 100
        # the pretrained body wants far smaller steps than the new head did (measured: lr/10 on the head undoes it)
        learn.fit_one_cycle(args.unfrozen_epochs, max_lr=slice(head_lr / 10, head_lr))
        phases.append(_phase('unfrozen', learn.recorder))
        unfrozen = _Checkpoint('unfrozen', learn, accuracy_np)
        print(f'unfrozen phase: validation accuracy {unfrozen.accuracy:.4f}')
        if unfrozen.better_than(best):
            best = unfrozen
        else:
            best.restore(learn)
            print(f'the unfrozen phase ended worse on validation ({unfrozen.accuracy:.4f}, loss '
                  f'{unfrozen.loss:.4f}) than the frozen one ({best.accuracy:.4f}, loss {best.loss:.4f}): '
                  f'keeping the frozen phase\'s weights')
    log_preds, y = learn.TTA(n_aug=args.tta)
    tta_acc = accuracy_np(np.mean(np.exp(log_preds), 0), y)

    plot_phases(phases).savefig(out / 'losses.png')
    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix().savefig(out / 'confusion_matrix.png')
    model_path = learn.export(out / 'model.pth')
    results = {'frozen accuracy': frozen.accuracy,
               **({'unfrozen accuracy': unfrozen.accuracy} if args.unfrozen_epochs else {}),
               'final accuracy': best.accuracy, f'TTA accuracy (n_aug={args.tta})': tta_acc,
               'max_lr': lr, 'seconds': time.perf_counter() - started}
    print('\n' + '\n'.join(f'{k:28s} {v:.4f}' for k, v in results.items()))
    print(f'exported phase               {best.name}')
    print(f'model: {model_path} (an export: `learner predict {model_path} IMAGE`, `learner serve {model_path}`)')
    print(f'plots: {out}/lr_find.png, losses.png, confusion_matrix.png')
    return {**results, 'exported phase': best.name}


class _Checkpoint:
    """A phase's validation accuracy and loss, and a copy of its weights to go back to."""

    def __init__(self, name: str, learn, accuracy_np):
        import torch
        import torch.nn.functional as F
        self.name = name
        log_preds, y = learn.predict_with_targs()
        self.accuracy = float(accuracy_np(np.exp(log_preds), y))
        self.loss = float(F.nll_loss(torch.as_tensor(log_preds), torch.as_tensor(y)))
        self.weights = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}

    def better_than(self, other: '_Checkpoint') -> bool:
        """Higher accuracy, or the same accuracy with a lower loss."""
        return (self.accuracy, -self.loss) > (other.accuracy, -other.loss)

    def restore(self, learn) -> None:
        learn.model.load_state_dict(self.weights)


def _phase(name: str, recorder) -> dict:
    """A copy of what the recorder holds about the fit that just ended."""
    return {'name': name, 'losses': list(recorder.losses), 'valid_losses': list(recorder.valid_losses),
            'epoch_iters': list(recorder.epoch_iters)}


def plot_phases(phases: Sequence[dict]):
    """Training loss per batch and validation loss per epoch across several fits, one after the other, each
    phase shaded and named; returns the Figure.

    Args:
        phases: dicts with 'name', 'losses' (per batch), 'valid_losses' and 'epoch_iters' (per epoch: batches
            so far in that fit), as `Recorder` holds them after a fit.
    """
    from .callbacks.recorder import smooth_debiased
    from .plotting import new_figure
    fig = new_figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    offset, all_losses = 0, []
    for k, phase in enumerate(phases):
        n = len(phase['losses'])
        ax.axvspan(offset, offset + max(n, 1), color=f'C{k}', alpha=0.08, lw=0)
        ax.text(offset + max(n, 1) / 2, 1.0, phase['name'], transform=ax.get_xaxis_transform(), ha='center',
                va='bottom', fontsize=9)
        x = np.arange(offset, offset + n)
        ax.plot(x, phase['losses'], color='0.75', lw=0.8, label='train (batch)' if k == 0 else None)
        all_losses += phase['losses']
        valid_x = [offset + i for i in phase['epoch_iters']]
        ax.plot(valid_x, phase['valid_losses'], 'o-', color='C3', label='valid (epoch)' if k == 0 else None)
        offset += n
    if all_losses:
        ax.plot(np.arange(len(all_losses)), smooth_debiased(all_losses), color='C0', label='train (smoothed)')
    ax.set_xlabel('batch (whole run)'); ax.set_ylabel('loss')
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)  # below: never over the curves
    fig.tight_layout()
    return fig


def _accuracy(learn, accuracy_np) -> float:
    log_preds, y = learn.predict_with_targs()
    return float(accuracy_np(np.exp(log_preds), y))


def predict(args: argparse.Namespace) -> None:
    """Print the top classes of each image for an exported model."""
    from .export import load_learner
    inference = load_learner(args.model)
    _check_kinds(inference, args.model, args.images)
    probs = inference.predict_probs(args.images)
    for image, p in zip(args.images, probs):
        top = np.argsort(-p)[:args.top]
        print(f'{image}: ' + ', '.join(f'{inference.classes[i]} {p[i]:.3f}' for i in top))


def _check_kinds(inference, model: str, paths: Sequence[str]) -> None:
    """Refuse an image given to a video model, or a video to an image model, saying which is which."""
    from .data.images import IMAGE_EXTENSIONS
    from .data.video_io import VIDEO_EXTENSIONS
    video_model = bool(getattr(inference, 'meta', {}).get('video'))
    for path in paths:
        suffix = Path(path).suffix.lower()
        if video_model and suffix in IMAGE_EXTENSIONS:
            raise SystemExit(f'{path} is an image, and {model} classifies videos: give it video files (.mp4, .webm, '
                             f'.mkv, .avi, ...) or folders of frames')
        if not video_model and (suffix in VIDEO_EXTENSIONS or Path(path).is_dir()):
            what = 'a folder' if Path(path).is_dir() else 'a video'
            raise SystemExit(f'{path} is {what}, and {model} classifies images: give it image files (.jpg, .png, '
                             f'...), or a video export')


def serve(args: argparse.Namespace) -> None:
    """Serve an exported model over HTTP until interrupted (Ctrl-C)."""
    model = Path(args.model)
    if not model.is_file():
        raise SystemExit(f'no export at {model}: write one with `learner train` (out/model.pth) or learn.export(path)')
    try:
        from .serve import ServeConfig, serve as run_server
    except ImportError as err:
        raise SystemExit(f'`learner serve` needs the serve extra ({err}): pip install "learner[serve]" '
                         f'(or pip install -e ".[serve]" in a checkout)') from err
    from .export import load_learner
    from .serve.app import check_limits
    try:
        config = ServeConfig(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_batch=args.max_batch,
                             max_queue=args.max_queue, max_files=args.max_files,
                             max_pixels=int(args.max_megapixels * 1e6),
                             max_request_pixels=int(args.max_request_megapixels * 1e6),
                             max_queue_bytes=int(args.max_queue_mb * 1024 * 1024),
                             **({'decode_threads': args.decode_threads} if args.decode_threads is not None else {}))
        inference = load_learner(model)
        check_limits(config, inference.sz)
    except ValueError as err:
        raise SystemExit(f'learner serve: {err}') from err
    where = 'all interfaces' if args.host in ('0.0.0.0', '::') else args.host
    port = args.port or '(a free one: see the line below)'
    print(f'serving {model} ({inference.meta.get("arch")}, {len(inference.classes)} classes) on {where}, port {port}; '
          f'the quick-test page is at /, the API docs at /docs', flush=True)
    run_server(inference, host=args.host, port=args.port, config=config, log_level=args.log_level)


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
    t.add_argument('--unfrozen-lr', type=float, default=None, help="the head's max learning rate once the body is "
                   'unfrozen; the body gets a tenth of it (default: lr/100)')
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
    s = sub.add_parser('serve', help='serve an exported model: prediction API, model card and a quick-test page')
    s.add_argument('model', help='a model file written by `learner train` (or learn.export)')
    s.add_argument('--host', default='127.0.0.1', help='address to bind (default: 127.0.0.1, this machine only; '
                   '0.0.0.0 serves every interface)')
    s.add_argument('--port', type=int, default=8000, help='TCP port (default: 8000; 0 picks a free one)')
    s.add_argument('--max-upload-mb', type=float, default=20, help='largest request body in MB; larger get 413 '
                   '(default: 20)')
    s.add_argument('--max-batch', type=int, default=32, help='most images in one model call (default: 32)')
    s.add_argument('--max-queue', type=int, default=1024, help='most images waiting before 503 (default: 1024)')
    s.add_argument('--max-files', type=int, default=64, help='most images in one /predict/batch call (default: 64)')
    s.add_argument('--max-megapixels', type=float, default=64, help='largest image an upload may decode to; larger '
                   'get 422 (default: 64)')
    s.add_argument('--max-request-megapixels', type=float, default=256, help='most pixels the images of one request '
                   'may decode to together; more get 413 (default: 256)')
    s.add_argument('--max-queue-mb', type=float, default=256, help='most bytes of images waiting for the model '
                   'before 503 (default: 256)')
    s.add_argument('--decode-threads', type=int, default=None, help='uploads decoded at once (default: CPU count, '
                   'at most 4)')
    s.add_argument('--log-level', default='info', choices=['critical', 'error', 'warning', 'info', 'debug'])
    from .studio.cli import add_parser as add_studio_parser
    add_studio_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `learner` console script and `python -m learner`."""
    args = build_parser().parse_args(argv)
    if args.command == 'studio':
        from .studio.cli import run as run_studio
        run_studio(args)
        return 0
    {'train': train, 'predict': predict, 'serve': serve}[args.command](args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
