"""Training-dynamics recipes: spectral bias, Neural Redshift (more to come: eos, opposing)."""
