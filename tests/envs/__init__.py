"""Builders of the real-framework test environments (Caffe root, Theano venv)."""
