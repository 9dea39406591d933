"""Loads the hypothesis profile named by ``HYPOTHESIS_PROFILE`` (see ``profiles.py``)."""

from . import profiles  # noqa: F401  (registers and loads the profile)
