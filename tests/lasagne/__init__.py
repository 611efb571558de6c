"""Lasagne/Theano importer tests (recorder, parameter files, real Theano comparisons)."""


def keras_outputs_by_source(model, plan, x, ref):
    """Every source layer's Keras output, in the source layout (NCHW), keyed by source name
    (a fused or aliased source shares its Keras layer's output).  ``ref`` gives the ranks; each
    layer's Keras layout tag (channels-last, or a sequence's own order) the permutation."""
    from migrator.core.compare.metrics import inputs_to_keras, to_source_layout
    from migrator.core.keras_build.executor import iter_keras_outputs

    k2s: dict[str, list[str]] = {}
    for m in plan.mappings:
        if m.keras_output:
            k2s.setdefault(m.keras_output, []).append(m.source)
    out = {}
    for kname, arr in iter_keras_outputs(model, plan, inputs_to_keras(plan, x)):
        for s in k2s.get(kname, []):
            out[s] = to_source_layout(arr, ref[s].ndim, plan.layout_of(s))
    return out


def convert_script(directory, script, flavour, seed, x_seed, fill=None) -> dict:
    """Write the Lasagne builder ``script`` and its parameters (``M.write_model``), import it,
    run the numpy reference on a random batch of 2 (``x_seed``) and build the Keras model:
    graph, plan, model, x, ref (batch item 0), keras (by source), builder, params, values."""
    import numpy as np

    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan
    from migrator.core.reference import numpy_ref
    from migrator.testing import lasagne_models as M

    b, p, values = M.write_model(directory, script, flavour, seed=seed, fill=fill)
    g = load_lasagne(b, p)
    inp = g.input_nodes[0]
    x = np.random.default_rng(x_seed).normal(size=(2,) + inp.out_shape[1:]).astype(np.float32)
    ref = {k: v[0] for k, v in numpy_ref.run_all(g, {inp.name: x}).items()}
    plan = make_plan(g)
    model = build_keras(plan)
    return {"graph": g, "plan": plan, "model": model, "x": x, "ref": ref,
            "keras": keras_outputs_by_source(model, plan, x, ref), "builder": b, "params": p,
            "values": values}
