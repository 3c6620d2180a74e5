"""The paper's optimizer: SGD with momentum 0.9 on the annealed learning rate (model/schedules.py),
and the moving average of the weights that the `long` preset evaluates with."""

import keras

from model.schedules import PaperLearningRate


def paper_optimizer(config, total_steps, loss_scaling=False):
    """SGD with momentum on the learning-rate schedule of `config`, as training uses it.

    With config.ema_momentum > 0 it also keeps a moving average of the
    weights (Keras' use_ema), which evaluation and export use. loss_scaling
    (mixed_float16) wraps it in a LossScaleOptimizer, as the Keras mixed
    precision guide prescribes for float16. Built the same way for training
    and for restoring a checkpoint, so that the two hold the same variables.
    """
    optimizer = keras.optimizers.SGD(
        PaperLearningRate(total_steps, config.learning_rate, config.lr_alpha, config.lr_beta),
        momentum=config.momentum, use_ema=config.ema_momentum > 0,
        ema_momentum=config.ema_momentum or 0.99)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer


def moving_averages(optimizer):
    """The optimizer's moving averages of the weights, in the order of the variables it was built on;
    None when it keeps none.

    Keras keeps them in a private attribute, the one its own SwapEMAWeights
    callback reads; this is the project's only use of it, and
    tests/test_model.py fails loudly should a Keras release rename it.
    """
    # Under loss scaling the averages are kept by the optimizer it wraps.
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not optimizer.use_ema:
        return None
    return optimizer._model_variables_moving_average
