"""Figures that show what a run works with: its samples after augmentation, its data set, its trained filters
and activations (``python -m cellseg.show <what>``).

- :mod:`~.request`: the targets, the command line's first word, and every check that needs no data or
  network (light: no torch at import, so a typo is reported at once);
- :mod:`~.figures`: fixed-size grids of panels, PNG writing and TensorBoard logging;
- :mod:`~.samples`: a split's samples as training draws them, or whole as validation sees them;
- :mod:`~.augment`: the transformation explorer (seed 001): each sample as several epochs draw it;
- :mod:`~.data_overview`: samples and labels per split, intensity histograms, class balance, cell counts;
- :mod:`~.filters`: the first convolution's kernels (seed 000's ``visualize_features``);
- :mod:`~.activations`: the strongest feature map of chosen layers (seed 000's ``max_activation``).
"""
