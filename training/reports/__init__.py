"""Reports: plots and a summary of a training run from its log."""
