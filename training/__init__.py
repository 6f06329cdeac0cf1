"""Training PAVENet (torch), in the order data flows through a step:

- :mod:`training.data`: datasets and clips (PoseTrack/COCO readers, the synthetic stream from
  :mod:`pavenet.synth`, clip sampling, augmentation, batching into targets);
- :mod:`training.objective`: matched targets and the loss (matcher, losses, criterion, track-query
  hand-over rules);
- :mod:`training.loop`: one step over a clip (``sequence``), the trainer and its live diagnosis;
- :mod:`training.evaluation`: validation, COCO/MOT metrics and ``pavenet-eval``;
- :mod:`training.reports`: plots and a summary from a run's log.

The commands (``*_cli.py``) and the training config live at the top.
"""
