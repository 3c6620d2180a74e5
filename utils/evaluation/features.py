"""The features DANN aligns: the exported feature extractor's outputs, and their 2-D t-SNE."""

import numpy as np

from utils.errors import ModelError
from utils.evaluation.trained_run import BATCH_SIZE, float_batches

def feature_function(classifier, feature_extractor=None):
    """pixels -> features: the export's own normalization, then `feature_extractor` (default: the export's)."""
    try:
        normalize = classifier.get_layer("normalise")
        feature_extractor = feature_extractor or classifier.get_layer("feature_extractor")
    except ValueError as error:
        raise ModelError(f"'{classifier.name}' has no 'normalise' or 'feature_extractor' layer: "
                         "pass a classifier exported by train.py.") from error
    return lambda pixels: feature_extractor(normalize(pixels), training=False)


def extract_features(classifier, images, batch_size=BATCH_SIZE):
    """(N, feature size) float32 outputs of the export's feature extractor, the features DANN aligns."""
    features = feature_function(classifier)
    return np.concatenate([np.asarray(features(batch)) for _, batch in float_batches(images, batch_size)])


def tsne_embedding(features, seed=0, perplexity=30.0, threads=None):
    """2-D t-SNE of `features` (scikit-learn), after PCA to at most 50 dimensions.

    The PCA step is the usual one before t-SNE: it removes noise dimensions
    and makes the neighbour search several times faster. threads caps the
    OpenMP and BLAS threads (None: all cores); on a machine shared with
    other jobs, 1 avoids threads spinning while they wait for a core.
    """
    # Imported here: only the t-SNE figure needs scikit-learn.
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # t-SNE needs perplexity < number of points; tiny samples get a smaller one.
    perplexity = min(perplexity, (len(features) - 1) / 3)
    with threadpool_limits(limits=threads):
        reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                    random_state=seed).fit_transform(reduced)


