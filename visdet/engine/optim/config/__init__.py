"""Layer 3, config checks: every optim_wrapper key is checked here, once, where the config is read,
before any model or optimizer exists (arguments, paramwise rules, optimizer config, low rank, wrapper options)."""
