"""Widgets of the main window: layer trees, mapping inspector, plots, log panel."""
