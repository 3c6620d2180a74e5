"""The DANN networks and the gradient reversal layer."""

from model.grl import GradientReversalLayer, reverse_gradient
from model.networks import (DANN, build_domain_classifier, build_feature_extractor,
                            build_label_classifier)

__all__ = ["DANN", "GradientReversalLayer", "build_domain_classifier",
           "build_feature_extractor", "build_label_classifier", "reverse_gradient"]
