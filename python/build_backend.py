"""PEP 517 build backend: setuptools, taken from the system.

pip builds a package in an isolated environment and would download
setuptools and wheel into it from an index, which an offline machine
cannot reach.  This backend (named in pyproject.toml, ``requires = []``)
finds the system's setuptools (Debian: python3-setuptools, python3-wheel)
and asks for nothing more, so ``pip install ./python`` works offline.
"""

import os
import sys

try:
    import setuptools.build_meta as _backend
except ImportError:  # inside pip's isolated environment
    for _dir in ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages"):
        if os.path.isdir(_dir) and _dir not in sys.path:
            sys.path.append(_dir)
    import setuptools.build_meta as _backend

build_wheel = _backend.build_wheel
build_sdist = _backend.build_sdist
prepare_metadata_for_build_wheel = _backend.prepare_metadata_for_build_wheel
if hasattr(_backend, "build_editable"):
    build_editable = _backend.build_editable
    prepare_metadata_for_build_editable = _backend.prepare_metadata_for_build_editable


def get_requires_for_build_wheel(config_settings=None):
    """Nothing to fetch: setuptools and wheel are the system's."""
    return []


def get_requires_for_build_sdist(config_settings=None):
    """Nothing to fetch."""
    return []


def get_requires_for_build_editable(config_settings=None):
    """Nothing to fetch."""
    return []
