"""The studio's storage on SQLite and PostgreSQL: migrations, content-addressed files, keys, the job queue (one
active job per project, claims that never hand one job to two workers), the fixed stratified split."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip('sqlalchemy', reason='the studio extra is not installed: pip install -e ".[studio]"')
import sqlalchemy as sa  # noqa: E402

from _serve_helpers import color_image, jpeg_bytes, png_bytes  # noqa: E402
from _studio_helpers import db_url, postgres, smooth_photo  # noqa: E402,F401
from learner.studio import catalog, queue  # noqa: E402
from learner.studio.blobs import BlobStore, sha256_hex  # noqa: E402
from learner.studio.errors import Conflict, Invalid, NotFound  # noqa: E402
from learner.studio.ingest import Ingestor  # noqa: E402
from learner.studio.keys import ensure_keys, hash_key, key_kind  # noqa: E402
from learner.studio.store import SCHEMA_VERSION, SchemaError, Store, database_url, set_setting, settings  # noqa: E402


@pytest.fixture
def store(db_url, tmp_path):
    s = Store(database_url(db_url, tmp_path))
    s.migrate()
    yield s
    s.dispose()


def _project_with_images(store, tmp_path, per_tag=6, tags=('red', 'green', 'blue')):
    blobs = BlobStore(tmp_path / 'blobs')
    with store.write() as conn:
        project = catalog.create_project(conn, 'colours', size=32)
        for name in tags:
            catalog.create_tag(conn, project['id'], name)
    for k, name in enumerate(tags):
        ingestor = Ingestor(store, blobs, project['id'], tag_names=[name])
        for i in range(per_tag):
            assert ingestor.add(f'{name}{i}.png', png_bytes(color_image(name, 100 * k + i)))['status'] == 'created'
    return project, blobs


def test_migrate_creates_the_schema_once_and_refuses_a_newer_one(store):
    assert store.migrate() == SCHEMA_VERSION          # already there: nothing applied again
    with store.write() as conn:
        set_setting(conn, 'schema_version', str(SCHEMA_VERSION + 1))
    with pytest.raises(SchemaError, match='newer than this learner knows'):
        store.migrate()


def test_a_database_of_something_else_is_refused(tmp_path):
    store = Store(database_url(None, tmp_path))
    with store.write() as conn:
        conn.execute(sa.text('CREATE TABLE customers (id INTEGER)'))
    with pytest.raises(SchemaError, match='not a studio database'):
        store.migrate()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    store = Store(database_url(None, tmp_path))
    store.migrate()
    with store.read() as conn:
        assert conn.exec_driver_sql('PRAGMA journal_mode').scalar() == 'wal'
        assert conn.exec_driver_sql('PRAGMA foreign_keys').scalar() == 1


def test_keys_are_stored_hashed_and_told_apart(store):
    with store.write() as conn:
        keys = ensure_keys(conn)
        assert ensure_keys(conn) is None                    # made once
        stored = [r.value for r in conn.execute(sa.select(settings))]
        assert keys['training'] not in stored and hash_key(keys['training']) in stored
        assert key_kind(conn, keys['training']) == 'training'
        assert key_kind(conn, keys['prediction']) == 'prediction'
        assert key_kind(conn, 'x' * 64) is None and key_kind(conn, None) is None


def test_blobs_are_written_once_by_content_and_swept_when_unreferenced(tmp_path):
    blobs = BlobStore(tmp_path / 'blobs')
    data = png_bytes(color_image('red', 1))
    sha = blobs.put(data)
    assert sha == sha256_hex(data) and blobs.put(data) == sha and blobs.read(sha) == data
    orphan = blobs.put(b'bytes no row names')
    leftover = blobs.path(sha).parent / '.deadbeef.tmp'
    leftover.write_bytes(b'half a file')
    removed = blobs.sweep(lambda shas: {s for s in shas if s == sha})
    assert removed == {'temporary': 1, 'orphans': 1}
    assert blobs.path(sha).exists() and not blobs.path(orphan).exists() and not leftover.exists()
    with pytest.raises(ValueError, match='not a sha256'):
        blobs.path('../../etc/passwd')


def test_upload_reports_same_bytes_near_duplicates_and_conflicting_tags(store, tmp_path):
    project, blobs = _project_with_images(store, tmp_path)
    again = Ingestor(store, blobs, project['id'], tag_names=['red']).add('copy.png', png_bytes(color_image('red', 0)))
    assert again['status'] == 'duplicate' and again['duplicate_of'] and again['conflicting'] is False
    green = Ingestor(store, blobs, project['id'], tag_names=['green'])
    other_tag = green.add('c.png', png_bytes(color_image('red', 0)))
    assert other_tag['status'] == 'duplicate' and other_tag['conflicting'] is True
    photo = smooth_photo(3)
    first = Ingestor(store, blobs, project['id'], tag_names=['red']).add('photo.png', png_bytes(photo))
    assert first['status'] == 'created' and first['near_duplicates'] == []
    same_tag = Ingestor(store, blobs, project['id'], tag_names=['red']).add('photo.jpg', jpeg_bytes(photo, 92))
    assert [(n['image_id'], n['conflicting']) for n in same_tag['near_duplicates']] == [(first['image_id'], False)]
    near = Ingestor(store, blobs, project['id'], tag_names=['blue']).add('recoded.jpg', jpeg_bytes(photo, 80))
    assert near['status'] == 'created'
    assert {n['image_id']: n['conflicting'] for n in near['near_duplicates']} == {first['image_id']: True,
                                                                               same_tag['image_id']: True}
    with store.read() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM images')).scalar() == 21


def test_unknown_project_and_tag_are_named(store, tmp_path):
    project, blobs = _project_with_images(store, tmp_path, per_tag=1)
    with pytest.raises(NotFound, match="no tag 'purple'"):
        Ingestor(store, blobs, project['id'], tag_names=['purple'])
    with pytest.raises(NotFound, match='no project 999'):
        Ingestor(store, blobs, 999)


def test_an_id_is_never_given_twice(store):
    """SQLite hands a deleted row's id (the highest) to the next row unless told not to: a script (or a model cache)
    still holding project 1 would then act on someone else's project."""
    with store.write() as conn:
        first = catalog.create_project(conn, 'first', size=32)
        tag = catalog.create_tag(conn, first['id'], 'a')
    with store.write() as conn:
        catalog.delete_project(conn, first['id'])
    with store.write() as conn:
        second = catalog.create_project(conn, 'second', size=32)
        other_tag = catalog.create_tag(conn, second['id'], 'a')
    assert second['id'] != first['id'] and other_tag['id'] != tag['id']


def test_training_is_refused_with_what_to_add(store, tmp_path):
    project, blobs = _project_with_images(store, tmp_path, per_tag=3, tags=('red', 'green'))
    with pytest.raises(Invalid, match=r"'green' has 3 \(add 2\).*'red' has 3 \(add 2\)"):
        queue.queue_job(store, project['id'])
    with store.write() as conn:
        lonely = catalog.create_project(conn, 'lonely', size=32)
        catalog.create_tag(conn, lonely['id'], 'only')
    ingestor = Ingestor(store, blobs, lonely['id'], tag_names=['only'])
    for i in range(5):
        ingestor.add(f'{i}.png', png_bytes(color_image('red', 500 + i)))
    with pytest.raises(Invalid, match='at least 2 tags'):
        queue.queue_job(store, lonely['id'])


_BAD_TRAININGS = [
    ('quick', None, {'valid_pct': 'abc'}, 'valid_pct'), ('quick', None, {'valid_pct': None}, 'valid_pct'),
    ('quick', None, {'valid_pct': 1.0}, 'valid_pct'), ('quick', None, {'bs': 'abc'}, 'bs'),
    ('quick', None, {'epochs': -3}, 'epochs'), ('quick', None, {'epochs': 2.5}, 'epochs'),
    ('quick', None, {'lr': float('nan')}, 'lr'), ('quick', None, {'num_workers': True}, 'num_workers'),
    ('quick', None, {'seed': -1}, 'seed'), ('quick', None, ['bs'], 'options'), ('quick', -5, None, 'budget_minutes'),
    ('advanced', -5, None, 'budget_minutes'), ('advanced', 'ten', None, 'budget_minutes'),
    ('advanced', None, None, 'budget_minutes')]


def test_bad_training_options_are_refused_when_queued_naming_the_option(store, tmp_path):
    """Refused at once (a 422 over HTTP), never accepted and then failed by the worker with a raw Python error."""
    project, _ = _project_with_images(store, tmp_path, per_tag=5, tags=('red', 'green'))
    for mode, budget, options, named in _BAD_TRAININGS:
        with pytest.raises(Invalid, match=named):
            queue.queue_job(store, project['id'], mode, budget, options)
    job = queue.queue_job(store, project['id'], 'quick', None, {'bs': 8, 'epochs': 2, 'lr': 0.01})
    assert job['options']['bs'] == 8 and job['status'] == 'queued'   # good ones still go through


def test_one_active_job_per_project_even_when_requests_race(store, tmp_path):
    project, _ = _project_with_images(store, tmp_path)
    outcomes, barrier = [], threading.Barrier(4)

    def train():
        barrier.wait()
        try:
            outcomes.append(queue.queue_job(store, project['id'])['id'])
        except Conflict as err:
            outcomes.append(str(err))
    threads = [threading.Thread(target=train) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    jobs = [o for o in outcomes if isinstance(o, int)]
    assert len(jobs) == 1, outcomes
    assert all('refused' in o and f'job {jobs[0]}' in o for o in outcomes if isinstance(o, str))


def test_workers_never_claim_the_same_job(store, tmp_path):
    ids = []
    for n in range(3):
        with store.write() as conn:
            p = catalog.create_project(conn, f'p{n}', size=32)
        project, _ = p, None
        blobs = BlobStore(tmp_path / 'blobs')
        for tag in ('a', 'b'):
            with store.write() as conn:
                catalog.create_tag(conn, project['id'], tag)
            ingestor = Ingestor(store, blobs, project['id'], tag_names=[tag])
            for i in range(5):
                ingestor.add(f'{i}.png', png_bytes(color_image('red' if tag == 'a' else 'blue', 1000 * n + i)))
        ids.append(queue.queue_job(store, project['id'])['id'])
    claimed, barrier = [], threading.Barrier(5)

    def claim(k):
        barrier.wait()
        while (job := queue.claim_job(store, f'w{k}')) is not None:
            claimed.append(job)
    threads = [threading.Thread(target=claim, args=(k,)) for k in range(5)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(claimed) == sorted(ids)


def test_the_split_is_stratified_and_fixed_per_image():
    items = [{'sha256': f'{k:064x}', 'labels': ['a' if k % 4 else 'b']} for k in range(200)]
    split = queue.split_images(1, items, 0.2)
    for tag in ('a', 'b'):
        members = [s for s, item in zip(split, items) if item['labels'] == [tag]]
        assert members.count('valid') == round(0.2 * len(members))
    more = items + [{'sha256': f'{k:064x}', 'labels': ['a']} for k in range(200, 220)]
    later = queue.split_images(1, more, 0.2)
    moved = sum(a != b for a, b in zip(split, later))
    assert moved <= 6, 'adding 20 images re-split at most a handful of the others'
    assert queue.split_images(2, items, 0.2) != split, 'each project draws its own order'


def test_a_queued_job_keeps_its_snapshot_when_images_change(store, tmp_path):
    project, blobs = _project_with_images(store, tmp_path)
    job = queue.queue_job(store, project['id'])
    Ingestor(store, blobs, project['id'], tag_names=['red']).add('late.png', png_bytes(color_image('red', 77)))
    with store.write() as conn:
        first = catalog.list_images(conn, project['id'], limit=1000)['images'][-1]
        catalog.delete_images(conn, project['id'], [first['id']])
        snapshot = queue.snapshot(conn, job['id'])
    assert len(snapshot) == 18 and first['sha256'] in {item['sha256'] for item in snapshot}
    assert job['n_train'] + job['n_valid'] == 18
