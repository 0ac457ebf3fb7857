"""The sample pipeline every data source shares: image -> channels -> target (+ weight map) -> crop -> augment.

``channels`` (strategies bound to a source's channel names), ``seed_codes`` (seed 001's integer channel
codes), ``targets`` (labeling strategies), ``weight_maps`` (the U-Net border weights, a product of the
labels that losses read from the batch), ``masks`` (mask files to instance ids), ``normalize``,
``augment``, ``dataset`` (the torch Dataset that chains them) and ``batch_augment`` (the same
augmentation applied to a batch on its device, ``augmentation.device=gpu``).
"""
