"""Checkpoints on disk: written atomically, loaded without running code, checked against the model.

One job per module, lowest first (each imports only those above it in this list):

* :mod:`.atomic`: atomic writes and mmengine's local backend that uses them;
  stale temporaries of killed writes.
* :mod:`.loading`: ``torch.load(weights_only=True)`` with an allowlist, and
  errors that name the file.
* :mod:`.deepspeed_folder`: a DeepSpeed checkpoint folder read as an ordinary
  checkpoint (the model's weights, for evaluation).
* :mod:`.install`: puts the writes and loaders above under mmengine.
* :mod:`.weights_check`: does a checkpoint's state dict fit the model?

Importing this package imports none of them (mmengine's runner, which some
need, prints DeepSpeed's chatter when imported).
"""
