"""The paper's schedules, as pure functions of training progress p in [0, 1].

Ganin et al., JMLR 2016, section 5.2.2: p goes linearly from 0 to 1 over
training; the learning rate anneals and the GRL's lambda ramps up.
Both accept Python floats or tensors, so the compiled training step computes
them in the graph from the optimizer's step counter.
"""

import keras
import tensorflow as tf


def learning_rate(progress, initial=0.01, alpha=10.0, beta=0.75):
    """lr = initial / (1 + alpha * p) ** beta.

    With the defaults: 0.01 at p = 0, 0.01 / 6 ** 0.75 ~= 0.00261 at p = 0.5,
    0.01 / 11 ** 0.75 ~= 0.00166 at p = 1.
    """
    return initial / (1.0 + alpha * progress) ** beta


def grl_lambda(progress, gamma=10.0, maximum=1.0):
    """lambda = maximum * (2 / (1 + exp(-gamma * p)) - 1).

    Starts at 0, so the domain classifier's noisy early gradients do not
    disturb the features, and rises to ~maximum (0.9866 at p = 0.5 with
    gamma = 10 and the paper's maximum of 1).
    """
    return maximum * (2.0 / (1.0 + tf.exp(-gamma * tf.cast(progress, tf.float32))) - 1.0)


def progress(step, total_steps):
    """p = step / total_steps, clipped to [0, 1], as a float32 tensor."""
    ratio = tf.cast(step, tf.float32) / tf.cast(total_steps, tf.float32)
    return tf.clip_by_value(ratio, 0.0, 1.0)


class PaperLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate` driven by the optimizer's own step counter.

    The optimizer calls it with its `iterations` every update, so the rate is
    computed in the graph, and a run restored from a checkpoint (which holds
    `iterations`) continues the schedule where it stopped.
    """

    def __init__(self, total_steps, initial=0.01, alpha=10.0, beta=0.75):
        self.total_steps = int(total_steps)
        self.initial = float(initial)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def __call__(self, step):
        return learning_rate(progress(step, self.total_steps), self.initial, self.alpha, self.beta)

    def get_config(self):
        return {"total_steps": self.total_steps, "initial": self.initial,
                "alpha": self.alpha, "beta": self.beta}
