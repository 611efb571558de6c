"""Migrator's core: framework-neutral IR, importers, mapping rules, Keras builder,
reference executors, comparison and saving.  No Qt import is allowed anywhere below
this package (``tests/core/test_no_qt.py`` enforces it)."""
