"""Layer 6, wrappers: OptimWrapper and AmpOptimWrapper with the non-finite guard; each runs the
config layer's checks on the arguments it reads (it is also built without the constructor)."""
