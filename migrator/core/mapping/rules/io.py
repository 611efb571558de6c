"""Mapping rules of the io family: ``Input`` (``Custom`` has no rule: it is always reported
unsupported by the planner)."""
from __future__ import annotations

from ..plan import ParamRow
from ..registry import SEQUENCE_LAYOUT, TIME_MAJOR_LAYOUT, Rule, keras_layout, register
from .common import Chain, unsupported
from .recurrent import feeds_recurrence, open_time_axis


@register("Input")
class InputRule(Rule):
    name = "Input"
    description = ("One keras.Input per source input; NCHW -> channels-last shape; a sequence "
                   "(N, T, F) feeding a recurrence keeps Keras's (and the source's) order.")

    def map(self, node, ctx):
        shape = tuple(node.attrs.get("shape") or node.out_shape or ())
        if len(shape) < 2:
            return unsupported(node, ctx, f"input shape {shape} has no channel axis")
        rank = len(shape)
        src = list(shape[1:])
        if rank == 3 and feeds_recurrence(ctx, node.outputs[0]):
            return self._sequence(node, ctx, shape)
        kshape = src if rank <= 2 else src[1:] + src[:1]
        chain = Chain(node, ctx, inputs=[])
        chain.add("Input", {"shape": kshape})
        rows = [ParamRow("shape", "source (C, H, W) -> Keras (H, W, C)" if rank == 4 else
                         "source (C, ...) -> Keras (..., C)" if rank > 2 else "unchanged",
                         tuple(kshape), sources={"shape": tuple(shape)})]
        return chain.finish(rows=rows, layout=keras_layout(rank))

    def _sequence(self, node, ctx, shape):
        """A sequence input: Keras (N, T, F) = the source's order (Lasagne); Caffe's LSTM/RNN
        blob (T, N, F) as it is.  The time axis stays open when the source declares none and
        every layer reading the sequence works at any length."""
        caffe = ctx.graph.framework == "caffe"
        open_t = not caffe and open_time_axis(node, ctx)
        kshape = [None if open_t else shape[1], shape[2]]
        chain = Chain(node, ctx, inputs=[])
        chain.add("Input", {"shape": kshape})
        if open_t:
            ctx.open_time.add(node.outputs[0])
        what = ("Caffe (T, N, F) -> Keras (T, N, F) unchanged: Caffe's time axis is the model's "
                "leading axis" if caffe else
                "sequence (N, T, F) -> Keras (N, T, F) unchanged (Keras RNN order)"
                + ("; time axis open (the source declares no length)" if open_t else ""))
        rows = [ParamRow("shape", what, tuple(kshape), sources={"shape": tuple(shape)})]
        return chain.finish(rows=rows, layout=TIME_MAJOR_LAYOUT if caffe else SEQUENCE_LAYOUT)
