"""Instance segmentation beyond class maps: the distance and flow representations of cells, their
decoding into instance labels, and per-cell measurements of the result."""
