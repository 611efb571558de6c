"""Migrator's own protobuf schema for Caffe files (``migrator_caffe.proto``).

The schema is written for Migrator from Caffe's documented field numbers; the generated
module ``migrator_caffe_pb2`` is committed (regenerate with ``make proto``).  Caffe
itself is never needed.

``pb`` is the generated module: ``pb.NetParameter`` (prototxt / full caffemodel),
``pb.FastNetParameter`` (a wire-compatible view that yields packed blob data as raw
bytes, for fast weight loading).
"""
from __future__ import annotations

from . import migrator_caffe_pb2 as pb

__all__ = ["pb"]
