"""`learner studio`: run the studio (`learner studio [--dir DIR] [--db URL] [--host] [--port]`), or
`learner studio import DIR PROJECT` (a folder of class subfolders, or a labels CSV), `learner studio train PROJECT`
(queue a training job, `--n-procs N` for N processes), `learner studio worker` (a worker on another machine),
`learner studio keys --reset`."""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import List, Tuple

__all__ = ['add_parser', 'run']

_COMMANDS = ('import', 'train', 'worker', 'keys')


def _common(parser: argparse.ArgumentParser, command: bool = False) -> None:
    """--dir and --db, on `learner studio` and again on each command: a command's own default would override what
    was given before the command (`learner studio --dir X import ...`), so there it only counts when given."""
    parser.add_argument('--dir', default=argparse.SUPPRESS if command else 'studio',
                        help='the studio folder: images, exports and (by default) the SQLite database '
                        '(default: ./studio)')
    parser.add_argument('--db', default=argparse.SUPPRESS if command else None,
                        help='database URL, e.g. postgresql://user@host/studio for a team (default: DIR/studio.db, '
                        'SQLite)')


def add_parser(sub) -> argparse.ArgumentParser:
    """Add `studio` (and its commands) to the `learner` command's sub-parsers."""
    studio = sub.add_parser('studio', help='a Custom Vision-style studio: projects, tags, training jobs, '
                            'iterations, published prediction endpoints, a Python client')
    _common(studio)
    studio.add_argument('--host', default='127.0.0.1', help='address to bind (default: 127.0.0.1, this machine '
                        'only; 0.0.0.0 serves every interface)')
    studio.add_argument('--port', type=int, default=8000, help='TCP port (default: 8000; 0 picks a free one)')
    studio.add_argument('--workers', type=int, default=1, help='local training worker processes (default: 1; 0 when '
                        'workers run elsewhere)')
    studio.add_argument('--max-upload-mb', type=float, default=200, help='largest request body in MB (default: 200)')
    studio.add_argument('--max-procs', type=int, default=None, help='the most training processes a job may ask for '
                        '(n_procs; default: what this machine runs, one per GPU else per CPU core; raise it when '
                        'bigger workers run elsewhere)')
    studio.add_argument('--log-level', default='info', choices=['critical', 'error', 'warning', 'info', 'debug'])
    commands = studio.add_subparsers(dest='studio_command')
    imp = commands.add_parser('import', help='import a folder of class subfolders (DIR/<tag>/*), or a labels CSV '
                              '(--csv), into a project (created when missing)')
    imp.add_argument('source', help='folder of images')
    imp.add_argument('project', help='project name (or id)')
    imp.add_argument('--csv', default=None, help='labels CSV (rows: file name relative to the folder, '
                     'space-separated tags; a header line is skipped)')
    imp.add_argument('--multi-label', action='store_true', help='create the project as multi-label')
    imp.add_argument('--size', type=int, default=224, help='image size of a created project (default: 224)')
    _common(imp, command=True)
    train = commands.add_parser('train', help="queue a training job for a project (the studio's workers run it)")
    train.add_argument('project', help='project name (or id)')
    train.add_argument('--budget-minutes', type=float, default=None, help='an advanced training within this many '
                       'minutes (default: quick, the head on precomputed features)')
    train.add_argument('--n-procs', type=int, default=1, help="train on this many processes of the worker's machine "
                       '(torchrun, DistributedDataParallel; default: 1)')
    train.add_argument('--epochs', type=int, default=None, help='epochs of the head (default: the recipe\'s)')
    train.add_argument('--wait', action='store_true', help='follow the job until it ends (a worker must be running)')
    _common(train, command=True)
    worker = commands.add_parser('worker', help='run training jobs for a studio (on this or another machine '
                                 'sharing its folder and database)')
    _common(worker, command=True)
    worker.add_argument('--once', action='store_true', help='exit when no job is queued')
    keys = commands.add_parser('keys', help='make new training and prediction keys (the old ones stop working)')
    _common(keys, command=True)
    keys.add_argument('--reset', action='store_true', required=True, help='replace both keys and print them')
    return studio


def run(args: argparse.Namespace) -> None:
    """Dispatch `learner studio ...`."""
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as err:
        raise SystemExit(f'`learner studio` needs the studio extra ({err}): pip install "learner[studio]" '
                         f'(or pip install -e ".[studio]" in a checkout)') from err
    command = getattr(args, 'studio_command', None)
    if command == 'import':
        _import(args)
    elif command == 'train':
        _train(args)
    elif command == 'worker':
        from .jobs import main as worker_main
        worker_main(['--dir', args.dir] + (['--db', args.db] if args.db else []) + (['--once'] if args.once else []))
    elif command == 'keys':
        from .keys import reset_keys
        from .server import Studio
        studio = Studio(args.dir, args.db)
        studio.store.migrate()
        with studio.store.write() as conn:
            keys = reset_keys(conn)
        print(f'Training-Key:   {keys["training"]}\nPrediction-Key: {keys["prediction"]}')
    else:
        from .ingest import UploadLimits
        from .server import run_studio
        limits = UploadLimits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
        run_studio(args.dir, args.db, args.host, args.port, args.workers, args.log_level, limits, args.max_procs)


def _folder_items(source: Path) -> List[Tuple[Path, List[str]]]:
    """(file, [tag]) for SOURCE/<tag>/* (also SOURCE/train|valid|val/<tag>/*: the split folders are merged)."""
    from ..data.duplicates import SPLIT_NAMES
    from ..data.images import image_files
    items = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        if folder.name.lower() in SPLIT_NAMES:
            items += [(f, [f.parent.name]) for sub in sorted(folder.iterdir()) if sub.is_dir()
                      for f in image_files(sub)]
        else:
            items += [(f, [folder.name]) for f in image_files(folder)]
    if not items:
        raise SystemExit(f'{source} holds no class subfolders with images: expected {source}/<tag>/*.jpg '
                         f'(or pass --csv labels.csv)')
    return items


def _csv_items(source: Path, csv_file: Path) -> List[Tuple[Path, List[str]]]:
    items = []
    with open(csv_file, newline='', encoding='utf-8') as handle:
        for line_no, row in enumerate(csv.reader(handle), 1):
            if line_no == 1 or not row:
                continue          # the header
            if len(row) < 2:
                raise SystemExit(f'{csv_file} line {line_no}: expected "file,tags", got {row}')
            path = source / row[0]
            if not path.is_file():
                raise SystemExit(f'{csv_file} line {line_no}: no file {path}')
            items.append((path, row[1].split()))
    return items


def _import(args: argparse.Namespace) -> None:
    from .catalog import create_project, create_tag, find_project, get_tags
    from .ingest import Ingestor
    from .server import Studio
    source = Path(args.source)
    if not source.is_dir():
        raise SystemExit(f'no folder {source}: pass a folder of class subfolders (or of the files a --csv names)')
    items = _csv_items(source, Path(args.csv)) if args.csv else _folder_items(source)
    studio = Studio(args.dir, args.db)
    studio.store.migrate()
    with studio.store.write() as conn:
        project = find_project(conn, args.project) or create_project(
            conn, args.project, multi_label=args.multi_label, size=args.size)
        known = {t['name'] for t in get_tags(conn, project['id'])}
        for name in sorted({tag for _, labels in items for tag in labels} - known):
            create_tag(conn, project['id'], name)
    counts = {'created': 0, 'duplicate': 0, 'error': 0}
    by_tags: dict = {}
    for path, labels in items:
        by_tags.setdefault(tuple(sorted(labels)), []).append(path)
    for labels, paths in by_tags.items():
        ingestor = Ingestor(studio.store, studio.blobs, project['id'], tag_names=labels, source='import')
        for path in paths:
            report = ingestor.add(path.name, path.read_bytes())
            counts[report['status']] += 1
            if report['status'] == 'error':
                print(f'  {path}: {report["error"]}')
            elif report['status'] == 'duplicate':
                print(f'  {path}: the same bytes as image {report["duplicate_of"]} (stored once)')
    print(f'project {project["name"]!r} (id {project["id"]}): {counts["created"]} image(s) added, '
          f'{counts["duplicate"]} duplicate(s), {counts["error"]} error(s)')


def _train(args: argparse.Namespace) -> None:
    """Queue a job through the database, as the REST API does (same checks, same messages); with --wait, print each
    phase until it ends."""
    from .catalog import find_project
    from .errors import StudioError
    from .queue import get_job, queue_job
    from .server import Studio
    studio = Studio(args.dir, args.db)
    studio.store.migrate()
    with studio.store.read() as conn:
        project = find_project(conn, args.project)
    if project is None:
        raise SystemExit(f'no project {args.project!r} in the studio at {studio.dirs.root}: create it (or import a '
                         f'folder into it) first')
    options = {'n_procs': args.n_procs, **({'epochs': args.epochs} if args.epochs is not None else {})}
    mode = 'quick' if args.budget_minutes is None else 'advanced'
    try:
        job = queue_job(studio.store, project['id'], mode, args.budget_minutes, options)
    except StudioError as err:
        raise SystemExit(f'refused: {err.detail}') from None
    print(f'job {job["id"]} queued: {mode} training of project {project["name"]!r} on {args.n_procs} process(es), '
          f'{job["n_train"]} training and {job["n_valid"]} validation images', flush=True)
    phase = None
    while args.wait and job['status'] in ('queued', 'running'):
        time.sleep(1.0)
        with studio.store.read() as conn:
            job = get_job(conn, job['id'])
        if (job['progress'] or {}).get('phase') != phase:
            phase = (job['progress'] or {}).get('phase')
            print(f'job {job["id"]}: {phase}', flush=True)
    if args.wait:
        print(f'job {job["id"]} {job["status"]}' + (f': {job["error"]}' if job['error'] else ''), flush=True)
        if job['status'] != 'succeeded':
            raise SystemExit(1)
