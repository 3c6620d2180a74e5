"""config.precision: what auto picks, and the step, the GRL and the export under mixed policies."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from config import Config
from conftest import make_trainer, paper_schedules, tiny_config, trained_weights as weights
from test_step import expected_gradients, random_batch, reference_logits
from utils.runtime import precision


def test_auto_picks_float32_without_native_bfloat16():
    policy, reason = precision.resolve("auto", flags={"avx2", "fma"}, capabilities=[])
    assert policy == "float32" and "no native bfloat16" in reason
    # A CPU with native bfloat16 trains in float32 when GPUs without it do the work.
    assert precision.resolve("auto", flags={"avx512_bf16"}, capabilities=[(7, 5)])[0] == "float32"
    assert precision.resolve("auto", flags={"avx2"}, capabilities=[(8, 0), (7, 0)])[0] == "float32"
    assert precision.resolve("auto", flags={"avx2"}, capabilities=[None])[0] == "float32"


def test_auto_picks_mixed_bfloat16_where_bfloat16_is_native_and_says_why():
    policy, reason = precision.resolve("auto", flags={"avx512f", "avx512_bf16"}, capabilities=[])
    assert policy == "mixed_bfloat16" and "avx512_bf16" in reason and "--precision float32" in reason
    policy, reason = precision.resolve("auto", flags={"avx512f", "amx_bf16", "amx_tile"}, capabilities=[])
    assert policy == "mixed_bfloat16" and "amx_bf16" in reason
    policy, reason = precision.resolve("auto", flags={"avx2"}, capabilities=[(8, 6), (9, 0)])
    assert policy == "mixed_bfloat16" and "compute capability 8.6" in reason


def test_a_precision_set_in_the_config_is_kept_and_an_unknown_one_refused():
    assert precision.resolve("mixed_float16", flags=set(), capabilities=[])[0] == "mixed_float16"
    with pytest.raises(ValueError, match="precision must be one of auto, float32, mixed_bfloat16"):
        Config(precision="float16")


# How far one step's gradient may be from the float32 reference, as the norm
# of the difference over the norm of the reference, per variable. Measured on
# this test's batch (2026-11-29, TF 2.21 on an AVX2 CPU): at most 0.13 in
# bfloat16 (8 significant bits; 0.145 on 2026-12-01 on an AMD CPU with native
# AVX512_BF16, whose kernels round and sum in another order) and 0.044 in float16 (11 bits, but the CPU
# kernels also sum in float16). A reversed domain gradient is 0.55 to 1.16 off.
TOLERANCES = {"mixed_bfloat16": 0.25, "mixed_float16": 0.1}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_mixed_step_follows_the_float32_gradient(tmp_path, policy):
    trainer = make_trainer(tiny_config(tmp_path, precision=policy, momentum=0.0,
                                       learning_rate=1.0))
    conv1 = trainer.networks.feature_extractor.get_layer("conv1")
    assert conv1.compute_dtype == policy.split("_")[1] and conv1.variable_dtype == "float32"
    assert trainer.networks.label_classifier.get_layer("logits").compute_dtype == "float32"
    assert trainer.networks.domain_classifier.get_layer("logits").compute_dtype == "float32"
    assert all(variable.dtype == "float32" for variable in trainer.variables)
    # float16 scales the loss (by 32768 at first): a gradient not scaled back would be far off.
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")

    step = 3
    trainer.optimizer.iterations.assign(step)
    rate, strength = paper_schedules(step, trainer.total_steps, initial_rate=1.0)
    before = weights(trainer)
    batch = random_batch(seed=11)
    trainer.dann_step.train_step(*(tf.constant(part) for part in batch))
    expected = expected_gradients(before, batch, strength, label_half="source")
    for index, (old, new, gradient) in enumerate(zip(before, weights(trainer), expected)):
        error = np.linalg.norm((old - new) / rate - gradient) / np.linalg.norm(gradient)
        assert error < TOLERANCES[policy], (trainer.variables[index].path, error)
    for value in trainer.metrics.values():
        assert value.result().dtype == tf.float32 and np.isfinite(float(value.result()))


def test_the_export_of_a_mixed_run_computes_in_float32_with_the_same_weights(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, precision="mixed_bfloat16"))
    trainer.train_steps(tf.constant(3))
    classifier = keras.models.load_model(trainer.export())
    computing = [layer for name in ("feature_extractor", "label_classifier")
                 for layer in classifier.get_layer(name).layers]
    assert computing and all(layer.compute_dtype == "float32" for layer in computing)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 3)).astype(np.float32)
    # The float32 networks written out with plain ops, from the run's own weights.
    normalized = (pixels - np.asarray(trainer.pixel_mean, np.float32)) / 255
    expected, _ = reference_logits(weights(trainer), tf.constant(normalized))
    np.testing.assert_allclose(classifier.predict(pixels, verbose=0)["logits"], expected.numpy(),
                               rtol=1e-4, atol=1e-4)
