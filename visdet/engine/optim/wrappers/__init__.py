"""Layer 6, wrappers: OptimWrapper and AmpOptimWrapper with the non-finite guard; they trust what
the constructor checked."""
