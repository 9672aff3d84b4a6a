"""Training variants, one module per method (base, sft, distilled_sft, cft, sft_refined, self_refine, cgd),
registered by name.

`get_variant(name)` / `ordered()` are what the pipeline, export, reports and plans read; a plugin module named in
$CGD_PLUGINS registers more with `register_variant(VariantSpec(...))`.
"""

from harness.variants import (  # noqa: F401  (registers the built-ins)
    base,
    cft,
    cgd,
    distilled_sft,
    self_refine,
    sft,
    sft_refined,
)
from harness.variants.spec import (
    PLUGINS_ENV,
    VariantSpec,
    baselines,
    get_variant,
    load_plugins,
    ordered,
    register_variant,
    variant_names,
)

BUILT_IN = ("base", "sft", "distilled_sft", "cft", "cgd")  # the default `variants:` of a recipe

__all__ = ["BUILT_IN", "PLUGINS_ENV", "VariantSpec", "baselines", "get_variant", "load_plugins", "ordered",
           "register_variant", "variant_names"]
