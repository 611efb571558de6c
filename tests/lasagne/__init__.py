"""Lasagne/Theano importer tests (recorder, parameter files, real Theano comparisons)."""
