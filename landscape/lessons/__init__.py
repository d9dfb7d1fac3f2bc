"""Training-dynamics lessons, one folder each: edge of stability, opposing signals, spectral bias, redshift."""
