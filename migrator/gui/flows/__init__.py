"""The window's long user flows, one module each: open, export, compare, mapping edits.

Each flow holds a reference to the main window, runs its long calls in workers and
updates the window's views; the window itself only lays out views and wires signals.
"""
