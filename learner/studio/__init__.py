"""learner studio: a Custom Vision-style application on this library (`learner studio`, `pip install learner[studio]`).

Projects of tagged images, training jobs run by worker processes (quick: the head on precomputed features;
advanced: a time budget of lr_find and 1cycle fine-tuning), iterations with precision/recall per tag at any
threshold, published prediction endpoints with stored predictions for the retrain loop, and a Python client:

    >>> from learner.studio import Client
    >>> studio = Client('http://127.0.0.1:8000', training_key=..., prediction_key=...)

Modules: store (database), blobs (image files), keys, catalog (projects, tags, images), ingest (uploads and
duplicates), queue (jobs), trainer (the recipes), jobs (the worker process), iterations, predictions, thumbnails
(gallery previews), app (routes), server (a running studio), cli, client (the SDK); static/ holds the web page
(plain HTML, CSS and JavaScript modules, served at /).
"""
from .client import Client, StudioError

__all__ = ['Client', 'StudioError']
