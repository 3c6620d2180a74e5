"""Seeded held-out parts of a data set: the test part of an image folder, the source validation part.

Each split draws a permutation from (held_out_seed, stream), apart from the
training seed, so runs of every seed hold out the same images; each purpose
has its own stream, so its part is drawn independently of the others.
"""

import numpy as np

SOURCE_TEST_STREAM, TARGET_TEST_STREAM, SOURCE_VALIDATION_STREAM, TARGET_VALIDATION_STREAM = 0, 1, 2, 3


def held_out_split(count, fraction, seed, stream, at_least=0):
    """(kept indices, held-out indices), each sorted: round(count * fraction), and at least
    `at_least`, of `count` items held out at random."""
    held_out = max(at_least, round(count * fraction))
    order = np.random.default_rng([seed, stream]).permutation(count)
    return np.sort(order[held_out:]), np.sort(order[:held_out])
