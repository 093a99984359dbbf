"""Import path kept for models pickled before the layered package: they name
``jobs.model.AbaloneFeatures``. The model lives in :mod:`jobs.core.model`."""

from jobs.core.model import AbaloneFeatures, build_model

__all__ = ["AbaloneFeatures", "build_model"]
