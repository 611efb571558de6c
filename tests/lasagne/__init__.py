"""Lasagne/Theano importer tests (recorder, parameter files, real Theano comparisons)."""


def keras_outputs_by_source(model, plan, x, ref):
    """Every source layer's Keras output, in the source layout (NCHW), keyed by source name
    (a fused or aliased source shares its Keras layer's output).  ``ref`` gives the ranks."""
    from migrator.core.compare.metrics import to_keras_layout, to_source_layout
    from migrator.core.keras_build.executor import iter_keras_outputs

    k2s: dict[str, list[str]] = {}
    for m in plan.mappings:
        if m.keras_output:
            k2s.setdefault(m.keras_output, []).append(m.source)
    out = {}
    for kname, arr in iter_keras_outputs(model, plan, to_keras_layout(x)):
        for s in k2s.get(kname, []):
            out[s] = to_source_layout(arr, ref[s].ndim)
    return out
