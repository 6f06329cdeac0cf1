"""Datasets and clips: readers (PoseTrack, COCO), clip sampling, augmentation, batching."""
