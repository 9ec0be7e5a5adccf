"""camflow: weakly supervised semantic segmentation from CAM seeds, as a cached pipeline."""

__version__ = "0.1.0"
