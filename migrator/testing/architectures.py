"""Public Caffe architectures rebuilt by code (for slow tests against the real Caffe).

Each generator returns a :class:`~migrator.testing.caffe_net.NetBuilder` whose layer names, layer
types, in-place chains, kernel/stride/pad values and pooling arithmetic follow the public deploy
definition it names:

* :func:`resnet50` -- Kaiming He's ``prototxt/ResNet-50-deploy.prototxt``
  (github.com/KaimingHe/deep-residual-networks): conv1 7x7/2 with bias, BatchNorm+Scale+ReLU in
  place, max pool 3x3/2 without pad (Caffe's ceil rule: 112 -> 56), bottleneck blocks 3-4-6-3 with
  the stride on ``branch2a`` (the 1x1) and a projection ``branch1`` on the first block of every
  stage, Eltwise sum, ``pool5`` average 7x7/1, ``fc1000``, Softmax.
* :func:`densenet121` -- shicai/DenseNet-Caffe ``DenseNet_121.prototxt``: conv1 7x7/2 without bias,
  BatchNorm (eps 1e-5, not in place) + Scale + ReLU, ``pool1`` max 3x3/2 pad 1 with the fork field
  ``ceil_mode: false`` (112 -> 56; BVLC's ceil rule would give 57), dense blocks 6-12-24-16 of
  BN-Scale-ReLU-conv1x1(128)-BN-Scale-ReLU-conv3x3(32) concatenated onto the running blob,
  transitions BN-Scale-ReLU-conv1x1(C/2)-avg pool 2x2/2, global average ``pool5`` and ``fc6`` as a
  1x1 Convolution with bias.
* :func:`alexnet` -- BVLC ``models/bvlc_alexnet/deploy.prototxt``: conv1 11x11/4, in-place ReLUs,
  LRN (size 5, alpha 1e-4, beta 0.75) before the max pools 3x3/2, conv2/conv4/conv5 grouped
  (group 2), fc6/fc7 with in-place ReLU + Dropout, fc8, Softmax (input 227x227).
* :func:`googlenet` -- BVLC ``models/bvlc_googlenet/deploy.prototxt``: layer names with ``/``
  (``conv1/7x7_s2``, ``inception_3a/1x1``, ...), two LRNs, ceil-rule max pools, nine inception
  modules (1x1 | 3x3 reduce + 3x3 | 5x5 reduce + 5x5 | max pool 3x3/1 + projection, concatenated),
  average ``pool5/7x7_s1``, Dropout, ``loss3/classifier``, Softmax.

``width`` divides every channel count (``growth`` too) so a test can run the whole topology --
every layer, every stride and every pooling rule at the public 224x224 input -- in seconds;
``width=1`` is the public model.  ``ceil_mode_field=False`` writes BVLC's ``round_mode: FLOOR``
instead of the fork's ``ceil_mode: false`` (the same arithmetic; the real BVLC Caffe refuses the
fork field).  The weights the builder holds are random; tests overwrite them with the real Caffe.
"""
from __future__ import annotations

from migrator.testing.caffe_net import NetBuilder


def _c(n: int, width: int) -> int:
    return max(1, n // width)


def resnet50(width: int = 1, size: int = 224, batch: int = 1, seed: int = 0) -> NetBuilder:
    """Kaiming He's ResNet-50 deploy net (see the module docstring)."""
    nb = NetBuilder("ResNet-50", seed=seed)
    nb.input("data", (batch, 3, size, size))

    def conv_bn(name: str, bn_name: str, sc_name: str, bottom: str, n: int, k: int, s: int, p: int,
                bias: bool = False, relu: str | None = None) -> str:
        nb.conv(name, bottom, _c(n, width), k, stride=s, pad=p, bias=bias)
        nb.bn(bn_name, name, top=name)
        nb.scale(sc_name, name, bias=True, top=name)
        if relu:
            nb.relu(relu, name, top=name)
        return name

    conv_bn("conv1", "bn_conv1", "scale_conv1", "data", 64, 7, 2, 3, bias=True, relu="conv1_relu")
    nb.pool("pool1", "conv1", "max", 3, stride=2)
    x = "pool1"
    for stage, blocks, mid in ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)):
        for i in range(blocks):
            b = f"{stage}{chr(ord('a') + i)}"
            stride = 2 if (i == 0 and stage > 2) else 1
            if i == 0:
                short = conv_bn(f"res{b}_branch1", f"bn{b}_branch1", f"scale{b}_branch1", x,
                                4 * mid, 1, stride, 0)
            else:
                short = x
            y = conv_bn(f"res{b}_branch2a", f"bn{b}_branch2a", f"scale{b}_branch2a", x, mid, 1,
                        stride, 0, relu=f"res{b}_branch2a_relu")
            y = conv_bn(f"res{b}_branch2b", f"bn{b}_branch2b", f"scale{b}_branch2b", y, mid, 3, 1, 1,
                        relu=f"res{b}_branch2b_relu")
            y = conv_bn(f"res{b}_branch2c", f"bn{b}_branch2c", f"scale{b}_branch2c", y, 4 * mid, 1,
                        1, 0)
            nb.eltwise(f"res{b}", [short, y], "sum")
            nb.relu(f"res{b}_relu", f"res{b}", top=f"res{b}")
            x = f"res{b}"
    nb.pool("pool5", x, "avg", 7, stride=1)
    nb.ip("fc1000", "pool5", 1000)
    nb.softmax("prob", "fc1000")
    return nb


def densenet121(width: int = 1, size: int = 224, batch: int = 1, seed: int = 0,
                ceil_mode_field: bool = True) -> NetBuilder:
    """shicai/DenseNet-Caffe DenseNet-121 (see the module docstring)."""
    nb = NetBuilder("DENSENET_121", seed=seed)
    nb.input("data", (batch, 3, size, size))
    growth, bottleneck = _c(32, width), _c(128, width)

    def bn_scale_relu(prefix: str, relu: str, bottom: str) -> str:
        top = f"{prefix}/bn"
        nb.bn(f"{prefix}/bn", bottom, top=top, eps=1e-5)
        nb.scale(f"{prefix}/scale", top, bias=True, top=top)
        nb.relu(relu, top, top=top)
        return top

    nb.conv("conv1", "data", _c(64, width), 7, stride=2, pad=3, bias=False)
    x = bn_scale_relu("conv1", "relu1", "conv1")
    if ceil_mode_field:
        nb.pool("pool1", x, "max", 3, stride=2, pad=1, ceil_mode=False)
    else:
        nb.pool("pool1", x, "max", 3, stride=2, pad=1, round_mode="FLOOR")
    x = "pool1"
    channels = _c(64, width)
    for block, layers in ((2, 6), (3, 12), (4, 24), (5, 16)):
        for i in range(1, layers + 1):
            p = f"conv{block}_{i}"
            y = bn_scale_relu(f"{p}/x1", f"relu{block}_{i}/x1", x)
            nb.conv(f"{p}/x1", y, bottleneck, 1, bias=False)
            y = bn_scale_relu(f"{p}/x2", f"relu{block}_{i}/x2", f"{p}/x1")
            nb.conv(f"{p}/x2", y, growth, 3, pad=1, bias=False)
            nb.concat(f"concat_{block}_{i}", [x, f"{p}/x2"])
            x = f"concat_{block}_{i}"
            channels += growth
        y = bn_scale_relu(f"conv{block}_blk", f"relu{block}_blk", x)
        if block < 5:
            channels //= 2
            nb.conv(f"conv{block}_blk", y, channels, 1, bias=False)
            nb.pool(f"pool{block}", f"conv{block}_blk", "avg", 2, stride=2)
            x = f"pool{block}"
        else:
            x = y
    nb.pool("pool5", x, "avg", global_pooling=True)
    nb.conv("fc6", "pool5", 1000, 1, bias=True)
    return nb


def alexnet(width: int = 1, size: int = 227, batch: int = 1, seed: int = 0) -> NetBuilder:
    """BVLC AlexNet (see the module docstring)."""
    nb = NetBuilder("AlexNet", seed=seed)
    nb.input("data", (batch, 3, size, size))
    nb.conv("conv1", "data", _c(96, width), 11, stride=4)
    nb.relu("relu1", "conv1", top="conv1")
    nb.lrn("norm1", "conv1", local_size=5, alpha=1e-4, beta=0.75)
    nb.pool("pool1", "norm1", "max", 3, stride=2)
    nb.conv("conv2", "pool1", _c(256, width), 5, pad=2, group=2)
    nb.relu("relu2", "conv2", top="conv2")
    nb.lrn("norm2", "conv2", local_size=5, alpha=1e-4, beta=0.75)
    nb.pool("pool2", "norm2", "max", 3, stride=2)
    nb.conv("conv3", "pool2", _c(384, width), 3, pad=1)
    nb.relu("relu3", "conv3", top="conv3")
    nb.conv("conv4", "conv3", _c(384, width), 3, pad=1, group=2)
    nb.relu("relu4", "conv4", top="conv4")
    nb.conv("conv5", "conv4", _c(256, width), 3, pad=1, group=2)
    nb.relu("relu5", "conv5", top="conv5")
    nb.pool("pool5", "conv5", "max", 3, stride=2)
    for i, n in ((6, _c(4096, width)), (7, _c(4096, width))):
        nb.ip(f"fc{i}", "pool5" if i == 6 else "fc6", n)
        nb.relu(f"relu{i}", f"fc{i}", top=f"fc{i}")
        nb.dropout(f"drop{i}", f"fc{i}", top=f"fc{i}")
    nb.ip("fc8", "fc7", 1000)
    nb.softmax("prob", "fc8")
    return nb


#: BVLC GoogLeNet's inception modules: name -> (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
INCEPTIONS = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
              "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
              "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
              "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
              "5b": (384, 192, 384, 48, 128, 128)}


def googlenet(width: int = 1, size: int = 224, batch: int = 1, seed: int = 0) -> NetBuilder:
    """BVLC GoogLeNet (see the module docstring)."""
    nb = NetBuilder("GoogleNet", seed=seed)
    nb.input("data", (batch, 3, size, size))

    def conv_relu(name: str, bottom: str, n: int, k: int, stride: int = 1, pad: int = 0) -> str:
        nb.conv(name, bottom, _c(n, width), k, stride=stride, pad=pad)
        nb.relu(name.replace("/", "/relu_", 1) if "/" in name else f"{name}_relu", name, top=name)
        return name

    conv_relu("conv1/7x7_s2", "data", 64, 7, 2, 3)
    nb.pool("pool1/3x3_s2", "conv1/7x7_s2", "max", 3, stride=2)
    nb.lrn("pool1/norm1", "pool1/3x3_s2", local_size=5, alpha=1e-4, beta=0.75)
    conv_relu("conv2/3x3_reduce", "pool1/norm1", 64, 1)
    conv_relu("conv2/3x3", "conv2/3x3_reduce", 192, 3, pad=1)
    nb.lrn("conv2/norm2", "conv2/3x3", local_size=5, alpha=1e-4, beta=0.75)
    nb.pool("pool2/3x3_s2", "conv2/norm2", "max", 3, stride=2)
    x = "pool2/3x3_s2"
    for key, (n1, n3r, n3, n5r, n5, pp) in INCEPTIONS.items():
        p = f"inception_{key}"
        a = conv_relu(f"{p}/1x1", x, n1, 1)
        conv_relu(f"{p}/3x3_reduce", x, n3r, 1)
        b = conv_relu(f"{p}/3x3", f"{p}/3x3_reduce", n3, 3, pad=1)
        conv_relu(f"{p}/5x5_reduce", x, n5r, 1)
        c = conv_relu(f"{p}/5x5", f"{p}/5x5_reduce", n5, 5, pad=2)
        nb.pool(f"{p}/pool", x, "max", 3, stride=1, pad=1)
        d = conv_relu(f"{p}/pool_proj", f"{p}/pool", pp, 1)
        nb.concat(f"{p}/output", [a, b, c, d])
        x = f"{p}/output"
        if key in ("3b", "4e"):
            nb.pool(f"pool{key[0]}/3x3_s2", x, "max", 3, stride=2)
            x = f"pool{key[0]}/3x3_s2"
    nb.pool("pool5/7x7_s1", x, "avg", 7, stride=1)
    nb.dropout("pool5/drop_7x7_s1", "pool5/7x7_s1", ratio=0.4)
    nb.ip("loss3/classifier", "pool5/7x7_s1", 1000)
    nb.softmax("prob", "loss3/classifier")
    return nb


#: name -> generator, for tests and the measurement notes
GENERATORS = {"resnet50": resnet50, "densenet121": densenet121, "alexnet": alexnet,
              "googlenet": googlenet}
