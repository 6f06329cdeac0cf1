"""PAVENet: end-to-end multi-person video pose tracking by query propagation.

This package's runtime path needs numpy, OpenCV and ONNX Runtime only; the PyTorch model is
imported only where a torch checkpoint is used.
"""

from pavenet.errors import DataError, PavenetError
from pavenet.layouts import COCO17, POSETRACK17, KeypointLayout, get_layout
from pavenet.poses import Poses
from pavenet.tracker import Tracker

__version__ = "0.1.0"

__all__ = ["COCO17", "POSETRACK17", "DataError", "KeypointLayout", "PavenetError", "Poses", "Tracker", "get_layout"]
