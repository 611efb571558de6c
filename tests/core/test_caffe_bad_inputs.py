"""Bad Caffe inputs: each one is a MigratorError whose one-line message names the file
(and the layer where there is one) -- never a traceback from protobuf or numpy."""
from __future__ import annotations

import builtins
import os
from pathlib import Path

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.importers.caffe_proto import pb
from migrator.testing.caffe_net import NetBuilder


def small_net(in_channels=3, seed=0, extra_fc=True) -> NetBuilder:
    nb = NetBuilder("small", seed=seed)
    nb.input("data", (1, in_channels, 9, 9))
    nb.conv("conv1", "data", 4, 3)
    nb.bn("bn1", "conv1")
    nb.scale("scale1", "conv1")
    nb.relu("relu1", "conv1")
    if extra_fc:
        nb.ip("fc", "conv1", 5)
    return nb


@pytest.fixture
def good(tmp_path):
    nb = small_net()
    p, m = nb.save(tmp_path / "good.prototxt", tmp_path / "good.caffemodel")
    return nb, p, m


def expect_error(*args, file=None, layer=None, contains=()) -> MigratorError:
    with pytest.raises(MigratorError) as ei:
        load_caffe(*args)
    err = ei.value
    msg = str(err)
    assert "\n" not in msg
    if file is not None:
        assert os.path.basename(str(file)) in msg, msg
        assert err.file is not None and os.path.basename(str(err.file)) == os.path.basename(str(file))
    if layer is not None:
        assert f"'{layer}'" in msg and err.layer == layer, msg
    for c in contains:
        assert c.lower() in msg.lower(), msg
    return err


# ------------------------------------------------------------------------------------
# unreadable / empty / corrupt files
# ------------------------------------------------------------------------------------
def test_missing_prototxt(tmp_path):
    expect_error(str(tmp_path / "missing.prototxt"), file="missing.prototxt", contains=["not found"])


def test_missing_caffemodel(good, tmp_path):
    _, p, _ = good
    expect_error(p, str(tmp_path / "gone.caffemodel"), file="gone.caffemodel", contains=["not found"])


def test_directory_instead_of_file(good, tmp_path):
    _, p, _ = good
    d = tmp_path / "adir.caffemodel"
    d.mkdir()
    expect_error(p, str(d), file="adir.caffemodel", contains=["directory"])


def _unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) of an unprivileged account to drop root to (``nobody``), or None."""
    try:
        import pwd
        ent = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None
    return (ent.pw_uid, ent.pw_gid) if ent.pw_uid != 0 else None


def _denied_as_unprivileged(path: str, uid: int, gid: int) -> dict:
    """In a forked child that drops root to ``uid``/``gid`` (so file modes apply to it):
    load ``path`` while the account can read it (must work), ``chmod 0`` it (the child owns
    it), load again.  Returns what the child saw.  A fork rather than a new interpreter:
    the interpreter lives under /root (mode 700), which the unprivileged account cannot
    execute, while the forked child already has Migrator and its dependencies loaded."""
    import pickle
    import traceback
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: never returns to pytest
        os.close(rfd)
        out: dict = {}
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            out["euid"] = os.geteuid()
            out["nodes"] = len(load_caffe(path).nodes)
            os.chmod(path, 0)
            try:
                load_caffe(path)
                out["error"] = None
            except MigratorError as e:
                out["error"], out["file"], out["layer"] = str(e), e.file, e.layer
        except BaseException:  # noqa: BLE001 -- the child reports any failure to the parent
            out["crash"] = traceback.format_exc()
        with os.fdopen(wfd, "wb") as f:
            pickle.dump(out, f)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def test_permission_denied_real(good):
    """A prototxt the user may not read: one line, 'permission denied', the file named.
    File modes do not apply to root, so under root the check runs as ``nobody``."""
    _, p, _ = good
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        os.chmod(p, 0)
        try:
            expect_error(p, file=p, contains=["permission denied"])
        finally:
            os.chmod(p, 0o644)
        return
    ids = _unprivileged_ids()
    if ids is None or not hasattr(os, "fork"):
        pytest.skip("running as root and there is no unprivileged account ('nobody') to drop to")
    uid, gid = ids
    # a directory the unprivileged account can enter, holding a file it owns
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="migrator-perm-")
    try:
        os.chmod(d, 0o755)
        q = os.path.join(d, "good.prototxt")
        shutil.copyfile(p, q)
        os.chown(q, uid, gid)
        os.chmod(q, 0o644)
        load_caffe(q)          # the same code paths are loaded before the child drops root
        seen = _denied_as_unprivileged(q, uid, gid)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert "crash" not in seen, seen.get("crash")
    assert seen["euid"] == uid != 0
    assert seen["nodes"] == len(load_caffe(p).nodes)       # readable: it loads
    msg = seen["error"]
    assert msg is not None, "an unreadable prototxt loaded"
    assert "\n" not in msg and "permission denied" in msg.lower(), msg
    assert seen["file"] == q and os.path.basename(q) in msg, msg


def test_permission_denied(good, monkeypatch):
    _, p, m = good
    real_open = builtins.open

    def fake_open(path, *a, **kw):
        if os.fspath(path) == m:
            raise PermissionError(13, "Permission denied", m)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", fake_open)
    expect_error(p, m, file=m, contains=["permission denied"])


def test_empty_prototxt(tmp_path):
    p = tmp_path / "empty.prototxt"
    p.write_bytes(b"")
    expect_error(str(p), file=p, contains=["empty"])


def test_whitespace_only_prototxt(tmp_path):
    p = tmp_path / "blank.prototxt"
    p.write_text("\n   \n")
    expect_error(str(p), file=p, contains=["empty"])


def test_comment_only_prototxt(tmp_path):
    p = tmp_path / "comments.prototxt"
    p.write_text("# nothing here\n")
    expect_error(str(p), file=p, contains=["no layers"])


def test_empty_caffemodel(good, tmp_path):
    _, p, _ = good
    m = tmp_path / "empty.caffemodel"
    m.write_bytes(b"")
    expect_error(p, str(m), file=m, contains=["empty"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_random_bytes_caffemodel(good, tmp_path, seed):
    _, p, _ = good
    m = tmp_path / "random.caffemodel"
    m.write_bytes(np.random.default_rng(seed).bytes(4096))
    err = expect_error(p, str(m), file=m)
    assert "caffemodel" in str(err).lower()


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.999])
def test_truncated_caffemodel(good, tmp_path, fraction):
    _, p, m = good
    data = Path(m).read_bytes()
    t = tmp_path / "trunc.caffemodel"
    t.write_bytes(data[: int(len(data) * fraction)])
    expect_error(p, str(t), file=t)


def test_truncated_caffemodel_at_a_layer_boundary(good, tmp_path):
    """Cut exactly after the first layers: it parses, but weights are missing."""
    _nb, p, m = good
    net = pb.NetParameter()
    net.ParseFromString(Path(m).read_bytes())
    del net.layer[2:]       # keeps Input and conv1 only
    t = tmp_path / "cut.caffemodel"
    t.write_bytes(net.SerializeToString())
    expect_error(p, str(t), file=t, layer="bn1", contains=["missing weights", "truncated"])


def test_swapped_files(good):
    _, p, m = good
    expect_error(m, p, file=m, contains=["swap"])


def test_prototxt_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "bad.prototxt"
    p.write_text('name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bottom "data"\n}\n')
    err = expect_error(str(p), file=p, contains=["line 5"])
    assert "syntax" in str(err)


def test_prototxt_unbalanced_braces(tmp_path):
    p = tmp_path / "brace.prototxt"
    p.write_text('layer {\n  name: "a"\n  type: "ReLU"\n')
    expect_error(str(p), file=p, contains=["syntax", "line"])


def test_prototxt_bad_enum_value(tmp_path):
    p = tmp_path / "enum.prototxt"
    p.write_text('input: "data"\ninput_dim: 1\ninput_dim: 1\ninput_dim: 4\ninput_dim: 4\n'
                 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
                 '        pooling_param { pool: MEDIAN kernel_size: 2 } }\n')
    expect_error(str(p), file=p, contains=["line 7", "MEDIAN"])


def test_v0_format_is_reported(tmp_path):
    p = tmp_path / "v0.prototxt"
    p.write_text('layers { layer { name: "conv1" type: "conv" num_output: 4 } }\n')
    expect_error(str(p), file=p, layer="conv1", contains=["V0"])


def test_mixed_layer_and_layers(tmp_path):
    p = tmp_path / "mixed.prototxt"
    p.write_text('layer { name: "a" type: "ReLU" bottom: "x" top: "x" }\n'
                 'layers { name: "b" type: RELU bottom: "x" top: "x" }\n')
    expect_error(str(p), file=p, contains=["mixes"])


# ------------------------------------------------------------------------------------
# weights that do not fit
# ------------------------------------------------------------------------------------
def test_conv_weight_does_not_fit_input_channels(tmp_path):
    """A caffemodel made for a 4-channel input, loaded with a 3-channel prototxt."""
    p, _ = small_net(in_channels=3).save(tmp_path / "three.prototxt", None)
    _, m = small_net(in_channels=4).save(tmp_path / "four.prototxt", tmp_path / "four.caffemodel")
    expect_error(p, m, layer="conv1", contains=["input channels", "3", "blobs from", "four.caffemodel"])


def test_conv_weight_wrong_num_output(tmp_path):
    nb = small_net()
    p, _ = nb.save(tmp_path / "net.prototxt", None)
    nb2 = NetBuilder("other", seed=1)
    nb2.input("data", (1, 3, 9, 9))
    nb2.conv("conv1", "data", 6, 3)
    _, m = nb2.save(tmp_path / "other.prototxt", tmp_path / "other.caffemodel")
    expect_error(p, m, file=m, layer="conv1", contains=["num_output 4"])


def test_inner_product_weight_does_not_fit(tmp_path):
    nb = small_net()
    nb_big = NetBuilder("big", seed=0)
    nb_big.input("data", (1, 3, 11, 11))
    nb_big.conv("conv1", "data", 4, 3)
    nb_big.bn("bn1", "conv1")
    nb_big.scale("scale1", "conv1")
    nb_big.relu("relu1", "conv1")
    nb_big.ip("fc", "conv1", 5)
    p, _ = nb.save(tmp_path / "small.prototxt", None)
    _, m = nb_big.save(tmp_path / "big.prototxt", tmp_path / "big.caffemodel")
    expect_error(p, m, layer="fc", contains=["196", "324"])


def test_batchnorm_vector_length_does_not_fit(tmp_path):
    nb = small_net()
    p, m = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    net = pb.NetParameter()
    net.ParseFromString(Path(m).read_bytes())
    bn = next(lp for lp in net.layer if lp.name == "bn1")
    for k in (0, 1):
        bn.blobs[k].data.append(1.0)
        bn.blobs[k].shape.dim[0] += 1
    Path(m).write_bytes(net.SerializeToString())
    expect_error(p, m, layer="bn1", contains=["5"])


def test_wrong_blob_count(tmp_path):
    nb = small_net()
    p, m = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    net = pb.NetParameter()
    net.ParseFromString(Path(m).read_bytes())
    bn = next(lp for lp in net.layer if lp.name == "bn1")
    del bn.blobs[2]
    Path(m).write_bytes(net.SerializeToString())
    expect_error(p, m, file=m, layer="bn1", contains=["expects 3 blob"])


def test_blob_data_count_differs_from_shape(tmp_path):
    nb = small_net()
    p, m = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    net = pb.NetParameter()
    net.ParseFromString(Path(m).read_bytes())
    conv = next(lp for lp in net.layer if lp.name == "conv1")
    del conv.blobs[0].data[-3:]
    Path(m).write_bytes(net.SerializeToString())
    expect_error(p, m, file=m, layer="conv1", contains=["holds"])


def test_missing_weights_for_a_layer(tmp_path):
    p, _ = small_net().save(tmp_path / "with_fc.prototxt", None)
    _, m = small_net(extra_fc=False).save(tmp_path / "no_fc.prototxt", tmp_path / "no_fc.caffemodel")
    expect_error(p, m, file=m, layer="fc", contains=["missing weights"])


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_weights(tmp_path, bad, word):
    nb = small_net()
    nb.weights["scale1"][1][2] = bad           # the Scale bias
    p, m = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    err = expect_error(p, m, file=m, layer="scale1", contains=[word, "blob 1", "bias"])
    assert "1 of 4" in str(err)


def test_non_finite_weights_in_an_unused_training_layer_are_ignored(tmp_path):
    nb = small_net()
    p, _ = nb.save(tmp_path / "deploy.prototxt", None)
    nb.layer("aux", "InnerProduct", ["conv1"], ["aux"], {"inner_product_param": {"num_output": 1}},
             blobs=[np.full((1, 4 * 7 * 7), np.nan, np.float32)])
    _, m = nb.save(tmp_path / "train.prototxt", tmp_path / "train.caffemodel")
    g = load_caffe(p, m)
    assert g.meta["caffe"]["unused_weights"] == ["aux"]


# ------------------------------------------------------------------------------------
# graph structure
# ------------------------------------------------------------------------------------
def test_undefined_bottom(tmp_path):
    p = tmp_path / "undef.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "relu" type: "ReLU" bottom: "dta" top: "r" }\n')
    expect_error(str(p), file=p, layer="relu", contains=["undefined bottom", "dta"])


def test_self_referencing_bottom(tmp_path):
    p = tmp_path / "self.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }\n')
    expect_error(str(p), file=p, layer="relu", contains=["undefined bottom"])


def test_cyclic_graph(tmp_path):
    p = tmp_path / "cycle.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "a" type: "ReLU" bottom: "b_out" top: "a_out" }\n'
                 'layer { name: "b" type: "TanH" bottom: "a_out" top: "b_out" }\n'
                 'layer { name: "c" type: "Sigmoid" bottom: "data" top: "c_out" }\n')
    err = expect_error(str(p), file=p, contains=["cyclic"])
    assert err.layer in ("a", "b")


def test_bottom_from_a_dropped_data_layer(tmp_path):
    p = tmp_path / "trainval.prototxt"
    p.write_text('layer { name: "data" type: "Data" top: "data" top: "label"\n'
                 '        data_param { source: "db" batch_size: 2 } }\n'
                 'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n')
    expect_error(str(p), file=p, layer="relu", contains=["Data layer 'data'", "Input"])


def test_duplicate_layer_names(tmp_path):
    p = tmp_path / "dup.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "r" type: "ReLU" bottom: "data" top: "a" }\n'
                 'layer { name: "r" type: "TanH" bottom: "a" top: "b" }\n')
    expect_error(str(p), file=p, layer="r", contains=["duplicate"])


def test_input_dim_count(tmp_path):
    p = tmp_path / "dims.prototxt"
    p.write_text('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\n'
                 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    expect_error(str(p), file=p, contains=["input_dim"])


def test_eltwise_coefficient_count(tmp_path):
    p = tmp_path / "elt.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "e" type: "Eltwise" bottom: "data" bottom: "data" top: "e"\n'
                 '        eltwise_param { coeff: 1 coeff: 2 coeff: 3 } }\n')
    expect_error(str(p), file=p, layer="e", contains=["3 coefficients"])


def test_even_lrn_size(tmp_path):
    p = tmp_path / "lrn.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 4 } }\n')
    expect_error(str(p), file=p, layer="n", contains=["odd"])


def test_pooling_without_kernel(tmp_path):
    p = tmp_path / "pool.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" }\n')
    expect_error(str(p), file=p, layer="p", contains=["kernel"])


def test_conv_too_large_for_input(tmp_path):
    p = tmp_path / "big.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                 '        convolution_param { num_output: 2 kernel_size: 7 } }\n')
    expect_error(str(p), file=p, layer="c", contains=["too small"])


def test_unknown_type_is_not_an_error(tmp_path):
    p = tmp_path / "custom.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "w" type: "Weird" bottom: "data" top: "w" }\n')
    g = load_caffe(str(p))
    assert g.node("w").op == "Custom"
