"""DANN itself, importing nothing else of the project: the gradient reversal layer, the three
networks, the loss, the schedules and optimizer, and the step's maths."""

from model.grl import GradientReversalLayer, reverse_gradient
from model.loss import correct, cross_entropies, dann_loss
from model.networks import Networks, build_domain_classifier, build_feature_extractor, build_label_classifier

__all__ = ["GradientReversalLayer", "Networks", "build_domain_classifier", "build_feature_extractor",
           "build_label_classifier", "correct", "cross_entropies", "dann_loss", "reverse_gradient"]
