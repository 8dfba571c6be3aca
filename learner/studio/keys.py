"""The studio's two API keys, as Custom Vision has them: a training key (everything) and a prediction key (the
prediction endpoints only).

Generated at the first start and shown once; the database keeps only their sha256 (a key is 32 random bytes, so a
plain hash cannot be reversed or guessed), and a key is checked in constant time. Clients send them as the
`Training-Key` and `Prediction-Key` headers.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Dict, Optional

from sqlalchemy.engine import Connection

from .store import get_setting, set_setting

__all__ = ['KEY_NAMES', 'ensure_keys', 'reset_keys', 'key_kind', 'hash_key']

#: key kind -> the setting holding its hash
KEY_NAMES = {'training': 'training_key_sha256', 'prediction': 'prediction_key_sha256'}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode('utf-8')).hexdigest()


def _new_key() -> str:
    return secrets.token_hex(32)


def reset_keys(conn: Connection, training: Optional[str] = None, prediction: Optional[str] = None) -> Dict[str, str]:
    """Replace both keys (new random ones unless given); returns them in clear, the only time they are seen."""
    keys = {'training': training or _new_key(), 'prediction': prediction or _new_key()}
    if keys['training'] == keys['prediction']:
        raise ValueError('the training key and the prediction key must differ')
    for kind, value in keys.items():
        set_setting(conn, KEY_NAMES[kind], hash_key(value))
    return keys


def ensure_keys(conn: Connection) -> Optional[Dict[str, str]]:
    """Create the keys when the studio has none; returns them in clear when created, else None."""
    if all(get_setting(conn, name) for name in KEY_NAMES.values()):
        return None
    return reset_keys(conn)


def key_kind(conn: Connection, key: Optional[str]) -> Optional[str]:
    """'training', 'prediction' or None for a key that is neither (compared in constant time)."""
    if not key:
        return None
    digest = hash_key(key)
    found = None
    for kind, name in KEY_NAMES.items():
        stored = get_setting(conn, name) or ''
        if hmac.compare_digest(stored, digest):
            found = kind
    return found
