"""Stand-in ``lasagne`` and ``theano`` packages used to *record* a Lasagne network.

This directory is put at the front of ``sys.path`` **only inside the builder child
process** (:mod:`migrator.core.importers.lasagne.builder_child`); the top-level packages
``lasagne`` and ``theano`` found here then replace the real ones.  Nothing here
computes: layers record their constructor arguments, parameters (shapes and tags, in
``add_param`` order) and output shapes with Lasagne 0.2's documented semantics, so that
a user's builder script runs without Theano and the network can be described.

Written from Lasagne's documented public API; no Lasagne or Theano code is used.
"""
import os

#: the directory to put on ``sys.path`` (it holds the ``lasagne`` and ``theano`` packages)
PATH = os.path.dirname(os.path.abspath(__file__))
