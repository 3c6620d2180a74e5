"""Label-free scores of a trained classifier on a target domain. None reads a target label, and for
every one a higher score marks the better classifier.

    negative_entropy          minus the mean entropy of the target predictions
    information_maximization  entropy of the mean prediction minus the mean entropy
                              (IM; as in Shi & Sha, ICML 2012, and SHOT)
    bnm                       the nuclear norm of the N x C target prediction matrix, over N
                              (Cui et al., CVPR 2020)
    snd                       soft neighbourhood density of the target predictions
                              (Saito et al., ICCV 2021)
    dev                       minus deep embedded validation's risk: the source validation
                              loss, importance-weighted towards the target (You et al., ICML 2019)
    class_ami                 agreement of k-means clusters of the features with the
                              classifier's classes (Musgrave et al., ECCV 2022)

They take arrays (softmax outputs, features, source labels), so that
reverse_validation.py's --scores_only and the tests run the same code. Each
uses the setting Musgrave et al.'s benchmark of validators ranked best, as
pytorch-adapt implements it; where this differs (samples for the scores whose
cost grows with the square of the images, a lighter discriminator for DEV),
the function says how and why.
"""

import numpy as np

# Probabilities are clipped to this before a logarithm.
EPSILON = 1e-12
# SND compares every pair of images, and ClassAMI clusters them: both on seeded samples of at most
# this many images a domain, the same for every run judged, which keeps them to seconds.
SAMPLE_SIZE = 10_000
# The L2 weight decays DEV's domain discriminator is tried at; the best on held-out features is kept.
DEV_WEIGHT_DECAYS = (1e-3, 1e-4, 1e-5)


def entropies(probabilities):
    """The entropy, in nats, of each row of an (N, C) matrix of probabilities."""
    probabilities = np.asarray(probabilities, np.float64)
    return -np.sum(probabilities * np.log(np.clip(probabilities, EPSILON, 1.0)), axis=1)


def negative_entropy(probabilities):
    """Confident predictions score near 0, uniform ones -log C."""
    return -float(np.mean(entropies(probabilities)))


def information_maximization(probabilities):
    """Confident predictions that also spread over the classes score high, up to log C; a
    classifier calling every image one class scores 0. It assumes about balanced classes."""
    marginal = np.mean(np.asarray(probabilities, np.float64), axis=0, keepdims=True)
    return float(entropies(marginal)[0]) + negative_entropy(probabilities)


def bnm(probabilities):
    """Batch nuclear-norm maximisation's score: the sum of the singular values of the (N, C)
    predictions, over N, for all target images at once (as pytorch-adapt's BNMValidator).

    Confident and diverse predictions score high. N one-hot predictions spread
    evenly over C classes score sqrt(C / N); all in one class, 1 / sqrt(N);
    uniform ones, 1 / sqrt(N C).
    """
    probabilities = np.asarray(probabilities, np.float64)
    return float(np.linalg.norm(probabilities, ord="nuc") / len(probabilities))


def sample(arrays, size=SAMPLE_SIZE, seed=0):
    """The same seeded sample of at most `size` rows of each of `arrays` (all of equal length)."""
    count = len(arrays[0])
    if count <= size:
        return arrays
    rows = np.sort(np.random.default_rng(seed).choice(count, size, replace=False))
    return [np.asarray(array)[rows] for array in arrays]


def snd(probabilities, temperature=0.05, seed=0, rows_at_once=1024):
    """Soft neighbourhood density: each image's similarities (cosine, over `temperature`) to every
    other image become a softmax, whose entropy is high where many images are alike; the mean
    entropy over the images (Saito et al.; their and Musgrave et al.'s setting: the softmax
    predictions as features, temperature 0.05). On a seeded sample of SAMPLE_SIZE images: the
    score grows with log N, so every run judged is scored on as many."""
    (features,) = sample([np.asarray(probabilities, np.float64)], seed=seed)
    features = features / np.clip(np.linalg.norm(features, axis=1, keepdims=True), EPSILON, None)
    total = 0.0
    for start in range(0, len(features), rows_at_once):
        logits = features[start:start + rows_at_once] @ features.T / temperature
        rows = np.arange(len(logits))
        logits[rows, start + rows] = -np.inf  # An image is not its own neighbour.
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        total += float(np.sum(entropies(weights / weights.sum(axis=1, keepdims=True))))
    return total / len(features)


def dev_risk(weights, losses):
    """Deep embedded validation's risk of per-image losses under importance weights (You et al.,
    equation 7): the weighted mean loss, with the weights as a control variate, whose
    coefficient eta = -Cov(w l, w) / Var(w) cancels much of the weights' variance."""
    weights, losses = np.asarray(weights, np.float64), np.asarray(losses, np.float64)
    weighted = weights * losses
    variance = np.var(weights, ddof=1)
    eta = 0.0 if variance == 0 else -np.cov(weighted, weights)[0, 1] / variance
    return float(np.mean(weighted) + eta * np.mean(weights) - eta)


def density_ratios(source_features, target_features, validation_features, seed=0,
                   weight_decays=DEV_WEIGHT_DECAYS):
    """(p_target(x) / p_source(x) for each validation feature, the discriminator's held-out accuracy).

    As You et al.: a domain discriminator is trained on source training
    features against target features, 20% of them held out, and its odds,
    times N_source / N_target, estimate the density ratio. Theirs (and
    pytorch-adapt's) is a 3-layer MLP tried at nine weight decays for up to 100
    epochs; here one hidden layer of 100, three weight decays, and seeded
    samples of SAMPLE_SIZE features a domain, so that it takes seconds. The
    one with the best held-out accuracy gives the ratios.
    """
    import keras

    source_features, = sample([source_features], seed=seed)
    target_features, = sample([target_features], seed=seed + 1)
    features = np.concatenate([source_features, target_features]).astype(np.float32)
    domains = np.concatenate([np.zeros(len(source_features)), np.ones(len(target_features))]).astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(features))
    held_out = order[:len(order) // 5]
    trained = order[len(order) // 5:]
    best = None
    for decay in weight_decays:
        keras.utils.set_random_seed(seed)
        discriminator = keras.Sequential([
            keras.Input(shape=(features.shape[1],)),
            keras.layers.Dense(100, activation="relu", kernel_regularizer=keras.regularizers.l2(decay)),
            keras.layers.Dense(2, kernel_regularizer=keras.regularizers.l2(decay))])
        discriminator.compile(optimizer=keras.optimizers.Adam(1e-3),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
        history = discriminator.fit(
            features[trained], domains[trained], validation_data=(features[held_out], domains[held_out]),
            batch_size=512, epochs=30, verbose=0, shuffle=True,
            callbacks=[keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=2,
                                                     restore_best_weights=True)])
        accuracy = max(history.history["val_accuracy"])
        if best is None or accuracy > best[0]:
            best = accuracy, discriminator
    accuracy, discriminator = best
    logits = np.asarray(discriminator.predict(np.asarray(validation_features, np.float32), verbose=0,
                                              batch_size=1024), np.float64)
    # p_target / p_source = exp(logit_target - logit_source), and the samples' prior odds undone.
    ratios = np.exp(np.clip(logits[:, 1] - logits[:, 0], -50, 50)) * len(source_features) / len(target_features)
    return ratios, float(accuracy)


def dev(source_features, target_features, validation_features, validation_losses, seed=0,
        weight_decays=DEV_WEIGHT_DECAYS):
    """(minus DEV's risk, the discriminator's held-out accuracy): the source validation images'
    losses (per-image cross-entropy with their true labels), weighted by how target-like each
    image's features are. Higher is better, like every score here."""
    ratios, accuracy = density_ratios(source_features, target_features, validation_features, seed, weight_decays)
    return -dev_risk(ratios, validation_losses), accuracy


def class_ami(source_features, source_labels, target_features, target_probabilities, seed=0):
    """ClassAMI: k-means, with k the number of classes, of the L2-normalised features of source
    and target images, started at the centre of each class (the true labels on the source, the
    classifier's argmax on the target); the adjusted mutual information between the clusters and
    those labels. Musgrave et al.'s best setting (features, normalised, with the source, centroid
    initialisation). On seeded samples of SAMPLE_SIZE images a domain."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score

    classes = np.asarray(target_probabilities).shape[1]
    source_features, source_labels = sample([source_features, source_labels], seed=seed)
    target_features, target_probabilities = sample([target_features, target_probabilities], seed=seed + 1)
    features = np.concatenate([source_features, target_features]).astype(np.float64)
    features /= np.clip(np.linalg.norm(features, axis=1, keepdims=True), EPSILON, None)
    labels = np.concatenate([np.asarray(source_labels), np.argmax(target_probabilities, axis=1)])
    # A class that no image has keeps a centre at the origin, as in pytorch-adapt.
    centres = np.stack([features[labels == label].mean(axis=0) if np.any(labels == label)
                        else np.zeros(features.shape[1]) for label in range(classes)])
    clusters = KMeans(n_clusters=classes, init=centres, n_init=1, random_state=seed).fit_predict(features)
    return float(adjusted_mutual_info_score(labels, clusters))


def prediction_scores(target_probabilities):
    """The scores that need only the target predictions: IM, negative entropy, BNM and SND."""
    return {"information_maximization": information_maximization(target_probabilities),
            "negative_entropy": negative_entropy(target_probabilities),
            "bnm": bnm(target_probabilities), "snd": snd(target_probabilities)}
