"""The studio's errors: each says what was wrong and what to do, and maps to one HTTP status (app.py answers
`{"detail": message}` with it; the client raises `StudioError` with the same message)."""
from __future__ import annotations

__all__ = ['StudioError', 'NotFound', 'Conflict', 'Invalid', 'Unauthorized']


class StudioError(Exception):
    """Base class: `status` is the HTTP status, the message the answer's detail."""
    status = 400

    def __init__(self, message: str, status: int = None):
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def detail(self) -> str:
        return str(self.args[0])


class NotFound(StudioError):
    """A project, tag, image, job, iteration or prediction that does not exist (404)."""
    status = 404


class Conflict(StudioError):
    """The request clashes with the studio's state: a name taken, a training already queued (409)."""
    status = 409


class Invalid(StudioError):
    """The request is well formed but cannot be done as asked: too few images to train, a bad setting (422)."""
    status = 422


class Unauthorized(StudioError):
    """A missing or wrong key (401)."""
    status = 401
