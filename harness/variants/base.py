"""base: the student as it is, untrained; every table's first row."""

from harness.variants.spec import VariantSpec, register_variant

SPEC = register_variant(VariantSpec(name="base", doc="(not trained: the student as it is)", order=0, baseline=True))
