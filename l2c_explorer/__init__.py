"""l2c-explorer: discover the categories in a folder of unlabelled images by learning to cluster.

Quick start::

    from l2c_explorer import L2CClusterer
    clusterer = L2CClusterer(similarity="omniglot").fit("path/to/images")
    clusterer.labels_, clusterer.n_clusters_

Names are imported lazily so that ``import l2c_explorer`` stays fast and never pulls in the app.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "L2CClusterer": "l2c_explorer.clustering",
    "SimilarityLearner": "l2c_explorer.similarity_learner",
    "SimilarityModel": "l2c_explorer.similarity_model",
    "load_similarity_model": "l2c_explorer.similarity_model",
    "list_models": "l2c_explorer.similarity_model",
    "DomainAdapter": "l2c_explorer.adaptation",
    "ImageSet": "l2c_explorer.data",
    "load_image_folder": "l2c_explorer.data",
    "Progress": "l2c_explorer.progress",
    "show": "l2c_explorer.app",
    "launch_app": "l2c_explorer.app",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'l2c_explorer' has no attribute {name!r}")


def __dir__():
    return __all__
