"""The studio's Python client (the SDK of the Custom Vision post): projects, uploads with their duplicate
report, training with a progress bar, iterations and their metrics, publishing, predictions and the retrain loop.

Example (the post's landmarks, a folder per landmark):
    >>> from learner.studio import Client
    >>> studio = Client('http://127.0.0.1:8000', training_key=TRAINING_KEY, prediction_key=PREDICTION_KEY)
    >>> project = studio.create_project('landmarks', description='famous landmarks')
    >>> print(project.upload_folder('landmarks'))            # one tag per subfolder; duplicates reported
    >>> iteration = project.train()                          # quick; waits with a progress bar
    >>> iteration.publish('landmarks')
    >>> project.predict('mystery.jpg')['predictions'][0]     # {'tag': 'taj_mahal', 'probability': 0.97}
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from .errors import StudioError

__all__ = ['Client', 'Project', 'Iteration', 'Job', 'StoredPrediction', 'UploadReport', 'StudioError']

PathLike = Union[str, Path]
_UPLOAD_FILES, _UPLOAD_BYTES = 32, 32 * 1024 * 1024   # per request


class Client:
    """A connection to a running studio.

    Args:
        url: the studio's address (default http://127.0.0.1:8000).
        training_key: the Training-Key (everything); prediction_key: the Prediction-Key (predict only).
        timeout: seconds per request.
    """

    def __init__(self, url: str = 'http://127.0.0.1:8000', training_key: Optional[str] = None,
                 prediction_key: Optional[str] = None, timeout: float = 120.0):
        import httpx
        self.url = url.rstrip('/')
        self.training_key, self.prediction_key = training_key, prediction_key
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def request(self, method: str, path: str, key: str = 'training', **kwargs: Any) -> Any:
        """One call; the answer's JSON (bytes for files), or StudioError with the studio's message and status."""
        headers = kwargs.pop('headers', {})
        if key == 'training' and self.training_key:
            headers['Training-Key'] = self.training_key
        elif key == 'prediction':
            if self.prediction_key:
                headers['Prediction-Key'] = self.prediction_key
            elif self.training_key:
                headers['Training-Key'] = self.training_key
        answer = self._http.request(method, path, headers=headers, **kwargs)
        if answer.status_code >= 400:
            try:
                detail = answer.json().get('detail', answer.text)
            except ValueError:
                detail = answer.text
            raise StudioError(f'{method} {path}: {answer.status_code} {detail}', status=answer.status_code)
        if answer.status_code == 204:
            return None
        if answer.headers.get('content-type', '').startswith('application/json'):
            return answer.json()
        return answer.content

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> 'Client':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def projects(self) -> List['Project']:
        return [Project(self, p) for p in self.request('GET', '/projects')]

    def create_project(self, name: str, description: str = '', multi_label: bool = False,
                       backbone: str = 'efficientnet_lite0', size: int = 224,
                       store_predictions: bool = True) -> 'Project':
        """A new project (a Conflict StudioError when the name is taken)."""
        body = dict(name=name, description=description, multi_label=multi_label, backbone=backbone, size=size,
                    store_predictions=store_predictions)
        return Project(self, self.request('POST', '/projects', json=body))

    def project(self, name_or_id: Union[str, int]) -> 'Project':
        """An existing project by id or name."""
        if isinstance(name_or_id, int):
            return Project(self, self.request('GET', f'/projects/{name_or_id}'))
        for project in self.projects():
            if project.name == name_or_id:
                return project
        raise StudioError(f'no project named {name_or_id!r}', status=404)

    def job(self, job_id: int) -> 'Job':
        return Job(self, self.request('GET', f'/jobs/{job_id}'))


class _Record:
    """A server object: its fields as attributes, the raw dict as `.data`."""

    def __init__(self, client: Client, data: dict):
        self.client, self.data = client, data

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get('data') or {}
        if name in data:
            return data[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        shown = {k: self.data[k] for k in list(self.data)[:6]}
        return f'{type(self).__name__}({shown})'


class UploadReport:
    """What an upload did, per file (see learner.studio.ingest): `created`, `duplicates`, `errors`,
    `near_duplicates` and `conflicting` list the files' reports."""

    def __init__(self, results: List[dict]):
        self.results = results

    created = property(lambda self: [r for r in self.results if r['status'] == 'created'])
    duplicates = property(lambda self: [r for r in self.results if r['status'] == 'duplicate'])
    errors = property(lambda self: [r for r in self.results if r['status'] == 'error'])
    near_duplicates = property(lambda self: [r for r in self.created if r['near_duplicates']])
    conflicting = property(lambda self: [r for r in self.results if r.get('conflicting') or
                                         any(n['conflicting'] for n in r.get('near_duplicates', []))])

    def __str__(self) -> str:
        lines = [f'{len(self.created)} image(s) added, {len(self.duplicates)} duplicate(s) stored once, '
                 f'{len(self.near_duplicates)} near-duplicate(s), {len(self.conflicting)} with a conflicting tag, '
                 f'{len(self.errors)} error(s)']
        lines += [f'  {r["filename"]}: same bytes as image {r["duplicate_of"]}' for r in self.duplicates]
        lines += [f'  {r["filename"]}: looks like image(s) ' + ', '.join(
            f'{n["image_id"]} {n["tags"]}' + (' (conflicting tag)' if n['conflicting'] else '')
            for n in r['near_duplicates']) for r in self.near_duplicates]
        lines += [f'  {r["error"]}' for r in self.errors]
        return '\n'.join(lines)


class Project(_Record):
    """A project: tags, images, training, iterations, predictions."""

    @property
    def path(self) -> str:
        return f'/projects/{self.id}'

    def tags(self) -> List[dict]:
        return self.client.request('GET', f'{self.path}/tags')

    def create_tag(self, name: str) -> dict:
        return self.client.request('POST', f'{self.path}/tags', json={'name': name})

    def _ensure_tags(self, names: Sequence[str]) -> None:
        known = {t['name'] for t in self.tags()}
        for name in names:
            if name not in known:
                self.create_tag(name)

    def upload(self, files: Union[PathLike, Iterable[PathLike]], tags: Sequence[str] = (),
               create_tags: bool = True) -> UploadReport:
        """Upload image files (a folder's images, or a list of files) under `tags` (created when missing unless
        `create_tags=False`), in requests of at most 32 files; returns the per-file report."""
        from ..data.images import image_files
        if isinstance(files, (str, Path)):
            files = image_files(files) if Path(files).is_dir() else [Path(files)]
        files = [Path(f) for f in files]
        if create_tags:
            self._ensure_tags(tags)
        results, batch, size = [], [], 0
        for path in files + [None]:
            data = path.read_bytes() if path is not None else b''
            if batch and (path is None or len(batch) == _UPLOAD_FILES or size + len(data) > _UPLOAD_BYTES):
                answer = self._post_files(batch, tags)
                results += answer['results']
                batch, size = [], 0
            if path is not None:
                batch.append((path.name, data))
                size += len(data)
        return UploadReport(results)

    def _post_files(self, batch: List[tuple], tags: Sequence[str]) -> dict:
        parts = [('files', (name, data, 'application/octet-stream')) for name, data in batch]
        try:
            return self.client.request('POST', f'{self.path}/images', params={'tag': list(tags)}, files=parts)
        except StudioError as err:
            if err.status != 422:
                raise
            # every file of the request was refused: report them (the message holds each reason)
            return {'results': [{'filename': name, 'status': 'error', 'error': str(err)} for name, _ in batch]}

    def upload_folder(self, root: PathLike) -> UploadReport:
        """Upload ROOT/<tag>/* with one tag per subfolder (the post's "category by category")."""
        results = []
        for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
            results += self.upload(folder, tags=[folder.name]).results
        return UploadReport(results)

    def images(self, tag_id: Optional[int] = None, untagged: bool = False, offset: int = 0, limit: int = 100) -> dict:
        params = {'offset': offset, 'limit': limit, 'untagged': untagged}
        if tag_id is not None:
            params['tag_id'] = tag_id
        return self.client.request('GET', f'{self.path}/images', params=params)

    def train(self, mode: str = 'quick', budget_minutes: Optional[float] = None, wait: bool = True,
              progress: bool = True, **options: Any) -> Union['Iteration', 'Job']:
        """Queue a training job; with `wait`, follow it (a fastprogress bar) and return its Iteration.

        `options`: epochs, bs (the global batch), seed, valid_pct, lr, num_workers, and n_procs: train on that many
        processes of the worker's machine (torchrun; at most one per GPU, else per CPU core), e.g.
        `project.train(n_procs=2)`."""
        job = Job(self.client, self.client.request('POST', f'{self.path}/train', json={
            'mode': mode, 'budget_minutes': budget_minutes, 'options': options}))
        return job.wait(progress=progress) if wait else job

    def iterations(self) -> List['Iteration']:
        return [Iteration(self.client, i) for i in self.client.request('GET', f'{self.path}/iterations')]

    def iteration(self, number: Optional[int] = None) -> 'Iteration':
        """The iteration with this number (default: the latest)."""
        found = self.iterations()
        if not found:
            raise StudioError(f'project {self.name!r} has no iteration yet: train one', status=404)
        if number is None:
            return found[-1]
        for iteration in found:
            if iteration.number == number:
                return iteration
        raise StudioError(f'project {self.name!r} has no iteration {number}', status=404)

    def compare(self, first: 'Iteration', second: 'Iteration', threshold: float = 0.5) -> dict:
        return self.client.request('GET', f'{self.path}/iterations/compare',
                                   params={'a': first.id, 'b': second.id, 'threshold': threshold})

    def predict(self, image: Union[PathLike, bytes]) -> dict:
        """The published iteration's tags for one image (stored for the retrain loop unless the project says not)."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        name = 'image' if isinstance(image, bytes) else Path(image).name
        return self.client.request('POST', f'{self.path}/predict', key='prediction',
                                   files={'file': (name, data, 'application/octet-stream')})

    def quick_test(self, image: Union[PathLike, bytes], iteration: Optional['Iteration'] = None) -> dict:
        """An iteration's tags for one image (default the latest), without storing it."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        params = {} if iteration is None else {'iteration_id': iteration.id}
        return self.client.request('POST', f'{self.path}/quicktest', params=params,
                                   files={'file': ('image', data, 'application/octet-stream')})

    def predictions(self, untagged_only: bool = False, offset: int = 0, limit: int = 50) -> List['StoredPrediction']:
        """Stored predictions, most uncertain first."""
        answer = self.client.request('GET', f'{self.path}/predictions', params={
            'untagged_only': untagged_only, 'offset': offset, 'limit': limit})
        return [StoredPrediction(self.client, p, self) for p in answer['predictions']]

    def unpublish(self) -> None:
        self.client.request('DELETE', f'{self.path}/publish')


class Iteration(_Record):
    """A trained iteration: metrics, the slider's table, mistakes, export, publish."""

    @property
    def path(self) -> str:
        return f'/projects/{self.project_id}/iterations/{self.id}'

    def performance(self, threshold: float = 0.5) -> dict:
        """Per-tag and overall precision, recall and average precision at `threshold`, and the confusion matrix."""
        return self.client.request('GET', f'{self.path}/performance', params={'threshold': threshold})

    def thresholds(self) -> dict:
        return self.client.request('GET', f'{self.path}/thresholds')

    def wrong(self, threshold: float = 0.5) -> List[dict]:
        return self.client.request('GET', f'{self.path}/wrong', params={'threshold': threshold})

    def publish(self, name: str) -> 'Iteration':
        """Answer the project's prediction endpoint with this iteration, under `name`."""
        return Iteration(self.client, self.client.request('POST', f'{self.path}/publish', json={'name': name}))

    def export(self, path: PathLike) -> Path:
        """Download the iteration as the library's export file (`load_learner(path)`, `learner serve path`)."""
        path = Path(path)
        path.write_bytes(self.client.request('GET', f'{self.path}/export'))
        return path


class Job(_Record):
    """A training job; `wait()` follows it to its iteration."""

    def refresh(self) -> 'Job':
        self.data = self.client.request('GET', f'/jobs/{self.id}')
        return self

    def cancel(self) -> 'Job':
        self.data = self.client.request('POST', f'/jobs/{self.id}/cancel')
        return self

    def wait(self, progress: bool = True, poll_s: float = 0.5, timeout_s: Optional[float] = None) -> 'Iteration':
        """Poll until the job ends; its Iteration, or StudioError with the reason when it failed or was cancelled."""
        bar = _JobBar() if progress else None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while self.refresh().status in ('queued', 'running'):
                if bar is not None:
                    bar.show(self.data)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f'job {self.id} still {self.status} after {timeout_s} s')
                time.sleep(poll_s)
        finally:
            if bar is not None:
                bar.close(self.data)
        if self.status != 'succeeded':
            raise StudioError(f'training job {self.id} {self.status}: {self.error or "cancelled"}', status=409)
        return Iteration(self.client, self.client.request(
            'GET', f'/projects/{self.project_id}/iterations/{self.iteration_id}'))


class _JobBar:
    """A fastprogress bar over the job's batches in the current phase (live in Jupyter and terminals); one line per
    phase elsewhere."""

    def __init__(self):
        from ..callbacks.progress import _live_display
        self.live, self.bar, self.phase = _live_display(), None, None

    def show(self, job: dict) -> None:
        progress = job.get('progress') or {}
        phase = progress.get('phase')
        if phase != self.phase:
            self.phase = phase
            if not self.live:
                print(f'job {job["id"]}: {phase}', flush=True)
            elif self.bar is not None:
                self.bar.on_iter_end()
            self.bar = None
        n_batches, epoch, n_epochs = progress.get('n_batches'), progress.get('epoch'), progress.get('n_epochs')
        if not self.live or not n_batches or n_epochs is None or epoch is None:
            return
        from fastprogress.fastprogress import progress_bar
        total = n_batches * n_epochs
        if self.bar is None:
            self.bar = progress_bar(range(total))
            self.bar.on_iter_begin()
        eta = progress.get('eta_s')
        self.bar.comment = f'{phase}: epoch {epoch + 1}/{n_epochs}' + (f', ETA {eta:.0f} s' if eta else '')
        self.bar.update(min(total, epoch * n_batches + (progress.get('batch') or 0)))

    def close(self, job: dict) -> None:
        if self.bar is not None:
            self.bar.on_iter_end()
        print(f'job {job["id"]}: {job["status"]}' + (f' ({job["error"]})' if job.get('error') else ''), flush=True)


class StoredPrediction(_Record):
    """An image sent to the prediction endpoint, with its predictions; `tag()` confirms or corrects it."""

    def __init__(self, client: Client, data: dict, project: Project):
        super().__init__(client, data)
        self.project = project

    def tag(self, tags: Sequence[str]) -> 'StoredPrediction':
        """Give the image these tags (it joins the training set)."""
        self.data = self.client.request('POST', f'{self.project.path}/predictions/{self.id}/tags',
                                        json={'tags': list(tags)})
        return self

    def image(self) -> bytes:
        return self.client.request('GET', f'{self.project.path}/images/{self.image_id}/file')
