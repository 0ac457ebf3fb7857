"""Data sources: a LightningDataModule per layout on disk (or generator), all on :mod:`~.base`.

A source says which channels its images have and how to decode a split into a
:class:`~cellseg.data.pipeline.dataset.SampleSet`; the base class binds the channel strategy to those
channel names once, fits normalisation statistics on the training split and builds the loaders.
"""
