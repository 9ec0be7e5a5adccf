"""Backbones and the CAM classifier."""

from camflow.models.backbones import Backbone, build_backbone
from camflow.models.classifier import CAMClassifier, build_classifier, multilabel_loss

__all__ = ["Backbone", "CAMClassifier", "build_backbone", "build_classifier", "multilabel_loss"]
