"""Core tests (importers, shapes, reference, mapping, Keras build, comparison)."""


def bn_frob_weights(tmp_path) -> str:
    """The caffemodel of a little conv + BatchNorm net (``bn_frob``: data (1, 3, 8, 8), conv 4x3,
    in-place BatchNorm ``bn``), saved in ``tmp_path`` (w.prototxt / w.caffemodel)."""
    from migrator.testing.caffe_net import NetBuilder

    nb = NetBuilder("bn_frob", seed=0)
    nb.input("data", (1, 3, 8, 8))
    nb.conv("conv", "data", 4, 3)
    nb.bn("bn", "conv", top="conv")
    return nb.save(tmp_path / "w.prototxt", tmp_path / "w.caffemodel")[1]
