"""Layer 1, the catalogue: one frozen record per optimizer (spec), the sources that write them (data),
the static scan, availability here, aliases from other ecosystems, and the listing."""
