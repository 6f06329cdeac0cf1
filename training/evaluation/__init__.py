"""Evaluation: validation during training, OKS-AP (pycocotools) and MOT metrics (motmetrics)."""
