"""The prediction service for exported learners: `learner serve EXPORT` (needs `pip install learner[serve]`)."""
from .app import ServeConfig, create_app, serve
from .decode import decode_image_bytes

__all__ = ['ServeConfig', 'create_app', 'serve', 'decode_image_bytes']
