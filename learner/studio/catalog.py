"""Projects, tags and images in the database: create, read, retag, untag, delete, with errors that name what is
missing. Functions take an open connection (the caller owns the transaction) and return plain dicts."""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import Conflict, Invalid, NotFound
from .store import image_tags, images, jobs, projects, publications, tags

__all__ = ['DEFAULT_BACKBONE', 'DEFAULT_SIZE', 'create_project', 'get_project', 'find_project', 'list_projects',
           'update_project', 'delete_project', 'create_tag', 'get_tags', 'resolve_tags', 'delete_tag', 'get_image',
           'list_images', 'set_image_tags', 'delete_images', 'image_tag_names', 'tag_counts', 'check_backbone',
           'list_backbones']

DEFAULT_BACKBONE = 'efficientnet_lite0'
DEFAULT_SIZE = 224
_MAX_NAME = 200


def _clean_name(name: str, what: str) -> str:
    name = (name or '').strip()
    if not name:
        raise Invalid(f'a {what} needs a non-empty name')
    if len(name) > _MAX_NAME:
        raise Invalid(f'{what} name too long ({len(name)} characters, at most {_MAX_NAME})')
    return name


def check_backbone(name: str) -> str:
    """The registered name of backbone `name`, when its pretrained weights are on this machine; Invalid otherwise."""
    from torchvision.models import WeightsEnum
    from ..models.backbones import get_backbone, registered_backbones, weights_folder
    try:
        spec = get_backbone(name)
    except KeyError:
        raise Invalid(f'unknown backbone {name!r}: use one of {", ".join(registered_backbones())} '
                      f'(default {DEFAULT_BACKBONE})') from None
    if spec.weights is None:
        raise Invalid(f'backbone {spec.name} has no pretrained weights: pick another (default {DEFAULT_BACKBONE})')
    if isinstance(spec.weights, WeightsEnum):
        file_name = os.path.basename(spec.weights.url)
        if not os.path.exists(os.path.join(weights_folder(), file_name)):
            raise Invalid(f'no pretrained weights for {spec.name} on the studio machine: put {file_name} in '
                          f'{weights_folder()} (TORCH_HOME/hub/checkpoints), or use {DEFAULT_BACKBONE}')
    return spec.name


def list_backbones() -> List[dict]:
    """Every registered backbone: {'name', 'available' (its weights are here), 'reason' (why not, else None)},
    the default first, then the available ones, by name."""
    from ..models.backbones import registered_backbones
    out = []
    for name in registered_backbones():
        try:
            check_backbone(name)
            out.append({'name': name, 'available': True, 'reason': None})
        except Invalid as err:
            out.append({'name': name, 'available': False, 'reason': err.detail})
    return sorted(out, key=lambda b: (b['name'] != DEFAULT_BACKBONE, not b['available'], b['name']))


# ------------------------------------------------------------------------------------------------- projects
def _project_row(row) -> dict:
    return {'id': row.id, 'name': row.name, 'description': row.description, 'multi_label': bool(row.multi_label),
            'backbone': row.backbone, 'size': row.size, 'store_predictions': bool(row.store_predictions),
            'created_at': row.created_at}


def create_project(conn: Connection, name: str, description: str = '', multi_label: bool = False,
                   backbone: str = DEFAULT_BACKBONE, size: int = DEFAULT_SIZE, store_predictions: bool = True) -> dict:
    """A new project; Conflict when the name is taken, Invalid for an unknown backbone or a bad size."""
    name = _clean_name(name, 'project')
    if not 32 <= int(size) <= 1024:
        raise Invalid(f'image size must be between 32 and 1024 pixels, got {size}')
    backbone = check_backbone(backbone)
    if conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).first():
        raise Conflict(f'a project named {name!r} already exists: pick another name or use that one')
    new_id = conn.execute(sa.insert(projects).values(
        name=name, description=description or '', multi_label=bool(multi_label), backbone=backbone, size=int(size),
        store_predictions=bool(store_predictions), created_at=time.time())).inserted_primary_key[0]
    return get_project(conn, new_id)


def get_project(conn: Connection, project_id: int) -> dict:
    row = conn.execute(sa.select(projects).where(projects.c.id == project_id)).first()
    if row is None:
        raise NotFound(f'no project {project_id}: GET /projects lists them')
    out = _project_row(row)
    published = conn.execute(sa.select(publications).where(publications.c.project_id == project_id)).first()
    out['published'] = None if published is None else {'iteration_id': published.iteration_id,
                                                      'name': published.name, 'published_at': published.published_at}
    return out


def find_project(conn: Connection, name_or_id: str) -> Optional[dict]:
    """The project with this name (or id, when all digits and no project has that name), or None."""
    row = conn.execute(sa.select(projects.c.id).where(projects.c.name == str(name_or_id))).first()
    if row is None and str(name_or_id).isdigit():
        row = conn.execute(sa.select(projects.c.id).where(projects.c.id == int(name_or_id))).first()
    return None if row is None else get_project(conn, row.id)


def list_projects(conn: Connection) -> List[dict]:
    return [_project_row(r) for r in conn.execute(sa.select(projects).order_by(projects.c.id))]


def update_project(conn: Connection, project_id: int, **changes) -> dict:
    """Change description, store_predictions or name (the other settings are fixed at creation)."""
    get_project(conn, project_id)
    allowed = {'name', 'description', 'store_predictions'}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(f'cannot change {sorted(unknown)}: only {sorted(allowed)} may change after creation')
    if 'name' in changes:
        changes['name'] = _clean_name(changes['name'], 'project')
        other = conn.execute(sa.select(projects.c.id).where(projects.c.name == changes['name'])).first()
        if other is not None and other.id != project_id:
            raise Conflict(f'a project named {changes["name"]!r} already exists')
    if changes:
        conn.execute(sa.update(projects).where(projects.c.id == project_id).values(**changes))
    return get_project(conn, project_id)


def delete_project(conn: Connection, project_id: int) -> None:
    """Delete a project and everything in it (not while it trains: cancel the job first)."""
    get_project(conn, project_id)
    active = conn.execute(sa.select(jobs.c.id).where(jobs.c.project_id == project_id,
                                                     jobs.c.status.in_(('queued', 'running')))).first()
    if active is not None:
        raise Conflict(f'project {project_id} is training (job {active.id}): cancel the job first')
    conn.execute(sa.delete(projects).where(projects.c.id == project_id))


# ------------------------------------------------------------------------------------------------- tags
def create_tag(conn: Connection, project_id: int, name: str) -> dict:
    get_project(conn, project_id)
    name = _clean_name(name, 'tag')
    if conn.execute(sa.select(tags.c.id).where(tags.c.project_id == project_id, tags.c.name == name)).first():
        raise Conflict(f'project {project_id} already has a tag {name!r}')
    tag_id = conn.execute(sa.insert(tags).values(project_id=project_id, name=name,
                                                 created_at=time.time())).inserted_primary_key[0]
    return {'id': tag_id, 'name': name, 'image_count': 0}


def tag_counts(conn: Connection, project_id: int) -> Dict[int, int]:
    query = (sa.select(image_tags.c.tag_id, sa.func.count()).select_from(image_tags.join(tags))
             .where(tags.c.project_id == project_id).group_by(image_tags.c.tag_id))
    return {tag_id: n for tag_id, n in conn.execute(query)}


def get_tags(conn: Connection, project_id: int) -> List[dict]:
    """Every tag of the project with its image count, by name."""
    get_project(conn, project_id)
    counts = tag_counts(conn, project_id)
    rows = conn.execute(sa.select(tags).where(tags.c.project_id == project_id).order_by(tags.c.name))
    return [{'id': r.id, 'name': r.name, 'image_count': counts.get(r.id, 0)} for r in rows]


def resolve_tags(conn: Connection, project_id: int, names: Sequence[str] = (), ids: Sequence[int] = ()) -> List[dict]:
    """The tags named by `names` and `ids`; NotFound naming every one the project lacks."""
    rows = conn.execute(sa.select(tags.c.id, tags.c.name).where(tags.c.project_id == project_id))
    known = {r.id: r.name for r in rows}
    by_name = {name: i for i, name in known.items()}
    missing = [repr(n) for n in names if n not in by_name] + [str(i) for i in ids if int(i) not in known]
    if missing:
        raise NotFound(f'project {project_id} has no tag {", ".join(missing)}: create it with POST '
                       f'/projects/{project_id}/tags (known: {", ".join(sorted(by_name)) or "none"})')
    found = {by_name[n] for n in names} | {int(i) for i in ids}
    return [{'id': i, 'name': known[i]} for i in sorted(found)]


def delete_tag(conn: Connection, project_id: int, tag_id: int) -> None:
    """Delete a tag; its images stay, without it."""
    resolve_tags(conn, project_id, ids=[tag_id])
    conn.execute(sa.delete(tags).where(tags.c.id == tag_id))


# ------------------------------------------------------------------------------------------------- images
def image_tag_names(conn: Connection, image_ids: Sequence[int]) -> Dict[int, List[str]]:
    """image id -> its tag names (sorted); images without tags are absent."""
    out: Dict[int, List[str]] = {}
    ids = list(image_ids)
    for start in range(0, len(ids), 500):
        query = (sa.select(image_tags.c.image_id, tags.c.name).select_from(image_tags.join(tags))
                 .where(image_tags.c.image_id.in_(ids[start:start + 500])).order_by(tags.c.name))
        for image_id, name in conn.execute(query):
            out.setdefault(image_id, []).append(name)
    return out


def _image_rows(conn: Connection, rows) -> List[dict]:
    rows = list(rows)
    names = image_tag_names(conn, [r.id for r in rows])
    return [{'id': r.id, 'sha256': r.sha256, 'width': r.width, 'height': r.height, 'source': r.source,
             'original_name': r.original_name, 'created_at': r.created_at, 'tags': names.get(r.id, [])} for r in rows]


def get_image(conn: Connection, project_id: int, image_id: int) -> dict:
    row = conn.execute(sa.select(images).where(images.c.id == image_id, images.c.project_id == project_id)).first()
    if row is None:
        raise NotFound(f'project {project_id} has no image {image_id}')
    return _image_rows(conn, [row])[0]


def list_images(conn: Connection, project_id: int, tag_id: Optional[int] = None, untagged: bool = False,
                offset: int = 0, limit: int = 100) -> dict:
    """A page of the project's images (newest first), all, under one tag, or untagged; with the total count."""
    get_project(conn, project_id)
    where = [images.c.project_id == project_id]
    if tag_id is not None:
        resolve_tags(conn, project_id, ids=[tag_id])
        where.append(images.c.id.in_(sa.select(image_tags.c.image_id).where(image_tags.c.tag_id == tag_id)))
    if untagged:
        where.append(~images.c.id.in_(sa.select(image_tags.c.image_id)))
    total = conn.execute(sa.select(sa.func.count()).select_from(images).where(*where)).scalar()
    limit = max(1, min(int(limit), 1000))
    rows = conn.execute(sa.select(images).where(*where).order_by(images.c.id.desc()).offset(int(offset)).limit(limit))
    return {'total': total, 'offset': int(offset), 'images': _image_rows(conn, rows)}


def set_image_tags(conn: Connection, project_id: int, image_ids: Sequence[int], tag_ids: Sequence[int],
                   mode: str = 'replace') -> int:
    """Tag images: 'replace' their tags with `tag_ids`, 'add' them, or 'remove' them; returns the images changed.

    A single-label project refuses more than one tag on an image."""
    project = get_project(conn, project_id)
    if mode not in ('replace', 'add', 'remove'):
        raise Invalid(f"mode must be 'replace', 'add' or 'remove', got {mode!r}")
    resolve_tags(conn, project_id, ids=tag_ids)
    ids = sorted({int(i) for i in image_ids})
    found = {r.id for r in conn.execute(sa.select(images.c.id).where(images.c.project_id == project_id,
                                                                   images.c.id.in_(ids)))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f'project {project_id} has no image {", ".join(map(str, missing))}')
    for image_id in ids:
        rows = conn.execute(sa.select(image_tags.c.tag_id).where(image_tags.c.image_id == image_id))
        current = {r.tag_id for r in rows}
        wanted = {'replace': set(tag_ids), 'add': current | set(tag_ids), 'remove': current - set(tag_ids)}[mode]
        if not project['multi_label'] and len(wanted) > 1:
            raise Invalid(f'project {project["name"]!r} is single-label: image {image_id} can have one tag, not '
                          f'{len(wanted)} (create a multi-label project for several tags per image)')
        if wanted - current:
            conn.execute(sa.insert(image_tags), [{'image_id': image_id, 'tag_id': t} for t in sorted(wanted - current)])
        if current - wanted:
            conn.execute(sa.delete(image_tags).where(image_tags.c.image_id == image_id,
                                                     image_tags.c.tag_id.in_(current - wanted)))
    return len(ids)


def delete_images(conn: Connection, project_id: int, image_ids: Sequence[int]) -> int:
    """Delete images from the project (their files go at the next sweep when nothing else uses them)."""
    get_project(conn, project_id)
    return conn.execute(sa.delete(images).where(images.c.project_id == project_id,
                                                images.c.id.in_([int(i) for i in image_ids]))).rowcount
