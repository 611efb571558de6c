# ruff: noqa: B008  (Lasagne's API: initializer and Gate instances as argument defaults)
"""Recording stand-ins for ``lasagne.layers.recurrent`` and ``lasagne.layers.embedding``
(Lasagne 0.2 semantics; 0.1 is the same without ``only_return_final`` and Layer-valued
``hid_init``/``cell_init``).

What matters for conversion is kept exactly as Lasagne keeps it:

* the parameters, in ``add_param`` order -- ``get_all_params`` order is the order of the
  values in a parameter file:  LSTMLayer: (W_in_to_g, W_hid_to_g, b_g) for g = ingate,
  forgetgate, cell, outgate; then W_cell_to_ingate/forgetgate/outgate (peepholes); then
  cell_init, hid_init.  GRULayer: updategate, resetgate, hidden_update triples, then
  hid_init.  CustomRecurrentLayer / RecurrentLayer: hid_init, then the parameters of
  ``input_to_hidden``, then of ``hidden_to_hidden`` (its ``get_params`` override);
* ``hid_init``/``cell_init`` are parameters (trainable only when ``learn_init``) unless a
  Layer is given, which then becomes an extra input (after the mask input, if any);
* the incomings: [input, mask_input?, hid_init layer?, cell_init layer?] with the
  ``*_incoming_index`` attributes Lasagne 0.2 sets (-1 when absent).
"""
import numpy as np

from .. import init, nonlinearities
from ._impl import DenseLayer, InputLayer, Layer, MergeLayer, get_all_params

__all__ = ["CustomRecurrentLayer", "EmbeddingLayer", "GRULayer", "Gate", "LSTMLayer",
           "RecurrentLayer"]


def _nl(nonlinearity):
    return nonlinearities.identity if nonlinearity is None else nonlinearity


class EmbeddingLayer(Layer):
    def __init__(self, incoming, input_size, output_size, W=init.Normal(), **kwargs):
        super().__init__(incoming, **kwargs)
        self.input_size = input_size
        self.output_size = output_size
        self.W = self.add_param(W, (input_size, output_size), name="W")

    def get_output_shape_for(self, input_shape):
        return tuple(input_shape) + (self.output_size,)


class _RecurrentBase(MergeLayer):
    """Incoming bookkeeping common to the recurrent layers."""

    def _incomings(self, incoming, mask_input, hid_init, cell_init=None):
        incomings = [incoming]
        self.mask_incoming_index = -1
        self.hid_init_incoming_index = -1
        self.cell_init_incoming_index = -1
        if mask_input is not None:
            incomings.append(mask_input)
            self.mask_incoming_index = len(incomings) - 1
        if isinstance(hid_init, Layer):
            incomings.append(hid_init)
            self.hid_init_incoming_index = len(incomings) - 1
        if isinstance(cell_init, Layer):
            incomings.append(cell_init)
            self.cell_init_incoming_index = len(incomings) - 1
        return incomings

    def _common(self, backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
                precompute_input, only_return_final):
        self.learn_init = learn_init
        self.backwards = backwards
        self.gradient_steps = gradient_steps
        self.grad_clipping = grad_clipping
        self.unroll_scan = unroll_scan
        self.precompute_input = precompute_input
        self.only_return_final = only_return_final
        if unroll_scan and gradient_steps != -1:
            raise ValueError("Gradient steps must be -1 when unroll_scan is true.")
        if unroll_scan and self.input_shapes[0][1] is None:
            raise ValueError("Input sequence length cannot be specified as None when "
                             "unroll_scan is True")

    def _gate_params(self, gate, gate_name, num_inputs):
        """One gate's W_in, W_hid and b (in Lasagne's order: the order of the saved params),
        and its nonlinearity."""
        n = self.num_units
        return (self.add_param(gate.W_in, (num_inputs, n), name=f"W_in_to_{gate_name}"),
                self.add_param(gate.W_hid, (n, n), name=f"W_hid_to_{gate_name}"),
                self.add_param(gate.b, (n,), name=f"b_{gate_name}", regularizable=False),
                gate.nonlinearity)

    def _init_param(self, spec, shape, name, learn_init):
        if isinstance(spec, Layer):
            return spec
        return self.add_param(spec, shape, name=name, trainable=learn_init, regularizable=False)


class CustomRecurrentLayer(_RecurrentBase):
    def __init__(self, incoming, input_to_hidden, hidden_to_hidden,
                 nonlinearity=nonlinearities.rectify, hid_init=init.Constant(0.),
                 backwards=False, learn_init=False, gradient_steps=-1, grad_clipping=0,
                 unroll_scan=False, precompute_input=True, mask_input=None,
                 only_return_final=False, **kwargs):
        super().__init__(self._incomings(incoming, mask_input, hid_init), **kwargs)
        self.input_to_hidden = input_to_hidden
        self.hidden_to_hidden = hidden_to_hidden
        self._common(backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
                     precompute_input, only_return_final)
        in_out = input_to_hidden.output_shape
        hid_out = hidden_to_hidden.output_shape
        if not all(s1 is None or s2 is None or s1 == s2 for s1, s2 in zip(in_out[1:], hid_out[1:])):
            raise ValueError("The output shape for input_to_hidden and hidden_to_hidden must be "
                             "equal after the first dimension, but input_to_hidden.output_shape="
                             f"{in_out!r} and hidden_to_hidden.output_shape={hid_out!r}")
        if not all(s1 is None or s2 is None or s1 == s2
                   for s1, s2 in zip(in_out[1:], hidden_to_hidden.input_shape[1:])):
            raise ValueError("The output shape for input_to_hidden must be equal to the input "
                             "shape of hidden_to_hidden after the first dimension, but "
                             f"input_to_hidden.output_shape={in_out!r} and "
                             f"hidden_to_hidden.input_shape={hidden_to_hidden.input_shape!r}")
        self.nonlinearity = _nl(nonlinearity)
        self.hid_init = self._init_param(hid_init, (1,) + tuple(hid_out[1:]), "hid_init",
                                         learn_init)

    def get_params(self, unwrap_shared=True, **tags):
        params = super().get_params(unwrap_shared=unwrap_shared, **tags)
        params += get_all_params(self.input_to_hidden, **tags)
        params += get_all_params(self.hidden_to_hidden, **tags)
        return params

    def get_output_shape_for(self, input_shapes):
        input_shape = input_shapes[0]
        hid = tuple(self.hidden_to_hidden.output_shape[1:])
        if self.only_return_final:
            return (input_shape[0],) + hid
        return (input_shape[0], input_shape[1]) + hid


class RecurrentLayer(CustomRecurrentLayer):
    def __init__(self, incoming, num_units, W_in_to_hid=init.Uniform(),
                 W_hid_to_hid=init.Uniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, hid_init=init.Constant(0.),
                 backwards=False, learn_init=False, gradient_steps=-1, grad_clipping=0,
                 unroll_scan=False, precompute_input=True, mask_input=None,
                 only_return_final=False, **kwargs):
        input_shape = incoming if isinstance(incoming, tuple) else incoming.output_shape
        if kwargs.get("name"):
            basename = kwargs["name"] + "."
            layer_kwargs = {k: v for k, v in kwargs.items() if k != "name"}
        else:
            basename = ""
            layer_kwargs = {k: v for k, v in kwargs.items() if k != "name"}
        in_to_hid = DenseLayer(InputLayer((None,) + tuple(input_shape[2:])), num_units,
                               W=W_in_to_hid, b=b, nonlinearity=None,
                               name=basename + "input_to_hidden", **layer_kwargs)
        hid_to_hid = DenseLayer(InputLayer((None, num_units)), num_units, W=W_hid_to_hid,
                                b=None, nonlinearity=None, name=basename + "hidden_to_hidden",
                                **layer_kwargs)
        self.W_in_to_hid = in_to_hid.W
        self.W_hid_to_hid = hid_to_hid.W
        self.b = in_to_hid.b
        super().__init__(incoming, in_to_hid, hid_to_hid, nonlinearity=nonlinearity,
                         hid_init=hid_init, backwards=backwards, learn_init=learn_init,
                         gradient_steps=gradient_steps, grad_clipping=grad_clipping,
                         unroll_scan=unroll_scan, precompute_input=precompute_input,
                         mask_input=mask_input, only_return_final=only_return_final, **kwargs)


class Gate:
    def __init__(self, W_in=init.Normal(0.1), W_hid=init.Normal(0.1), W_cell=init.Normal(0.1),
                 b=init.Constant(0.), nonlinearity=nonlinearities.sigmoid):
        self.W_in = W_in
        self.W_hid = W_hid
        if W_cell is not None:
            self.W_cell = W_cell
        self.b = b
        self.nonlinearity = _nl(nonlinearity)


class LSTMLayer(_RecurrentBase):
    def __init__(self, incoming, num_units, ingate=Gate(), forgetgate=Gate(),
                 cell=Gate(W_cell=None, nonlinearity=nonlinearities.tanh), outgate=Gate(),
                 nonlinearity=nonlinearities.tanh, cell_init=init.Constant(0.),
                 hid_init=init.Constant(0.), backwards=False, learn_init=False, peepholes=True,
                 gradient_steps=-1, grad_clipping=0, unroll_scan=False, precompute_input=True,
                 mask_input=None, only_return_final=False, **kwargs):
        super().__init__(self._incomings(incoming, mask_input, hid_init, cell_init), **kwargs)
        self.nonlinearity = _nl(nonlinearity)
        self.num_units = num_units
        self.peepholes = peepholes
        self._common(backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
                     precompute_input, only_return_final)
        num_inputs = int(np.prod(self.input_shapes[0][2:]))

        (self.W_in_to_ingate, self.W_hid_to_ingate, self.b_ingate,
         self.nonlinearity_ingate) = self._gate_params(ingate, "ingate", num_inputs)
        (self.W_in_to_forgetgate, self.W_hid_to_forgetgate, self.b_forgetgate,
         self.nonlinearity_forgetgate) = self._gate_params(forgetgate, "forgetgate", num_inputs)
        (self.W_in_to_cell, self.W_hid_to_cell, self.b_cell,
         self.nonlinearity_cell) = self._gate_params(cell, "cell", num_inputs)
        (self.W_in_to_outgate, self.W_hid_to_outgate, self.b_outgate,
         self.nonlinearity_outgate) = self._gate_params(outgate, "outgate", num_inputs)
        if self.peepholes:
            self.W_cell_to_ingate = self.add_param(ingate.W_cell, (num_units,),
                                                   name="W_cell_to_ingate")
            self.W_cell_to_forgetgate = self.add_param(forgetgate.W_cell, (num_units,),
                                                       name="W_cell_to_forgetgate")
            self.W_cell_to_outgate = self.add_param(outgate.W_cell, (num_units,),
                                                    name="W_cell_to_outgate")
        self.cell_init = self._init_param(cell_init, (1, num_units), "cell_init", learn_init)
        self.hid_init = self._init_param(hid_init, (1, num_units), "hid_init", learn_init)

    def get_output_shape_for(self, input_shapes):
        input_shape = input_shapes[0]
        if self.only_return_final:
            return input_shape[0], self.num_units
        return input_shape[0], input_shape[1], self.num_units


class GRULayer(_RecurrentBase):
    def __init__(self, incoming, num_units, resetgate=Gate(W_cell=None),
                 updategate=Gate(W_cell=None),
                 hidden_update=Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
                 hid_init=init.Constant(0.), backwards=False, learn_init=False,
                 gradient_steps=-1, grad_clipping=0, unroll_scan=False, precompute_input=True,
                 mask_input=None, only_return_final=False, **kwargs):
        super().__init__(self._incomings(incoming, mask_input, hid_init), **kwargs)
        self.num_units = num_units
        self._common(backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
                     precompute_input, only_return_final)
        num_inputs = int(np.prod(self.input_shapes[0][2:]))

        (self.W_in_to_updategate, self.W_hid_to_updategate, self.b_updategate,
         self.nonlinearity_updategate) = self._gate_params(updategate, "updategate", num_inputs)
        (self.W_in_to_resetgate, self.W_hid_to_resetgate, self.b_resetgate,
         self.nonlinearity_resetgate) = self._gate_params(resetgate, "resetgate", num_inputs)
        (self.W_in_to_hidden_update, self.W_hid_to_hidden_update, self.b_hidden_update,
         self.nonlinearity_hid) = self._gate_params(hidden_update, "hidden_update", num_inputs)
        self.hid_init = self._init_param(hid_init, (1, num_units), "hid_init", learn_init)

    def get_output_shape_for(self, input_shapes):
        input_shape = input_shapes[0]
        if self.only_return_final:
            return input_shape[0], self.num_units
        return input_shape[0], input_shape[1], self.num_units
