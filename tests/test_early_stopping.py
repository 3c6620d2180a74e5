"""Early stopping on the held-out source images: where a run stops, what it reports, and a resumed
run stopping where an uninterrupted one does."""

import json

import pytest

from conftest import make_trainer, stop_at, tiny_config
from utils.errors import TrainingError
from utils.training.early_stopping import MONITOR, EarlyStopping

# Source validation accuracy by evaluation step (eval_every 2 of 12 steps): best at step 4,
# then two evaluations without a better one.
SCRIPTED = {2: 0.50, 4: 0.60, 6: 0.55, 8: 0.60, 10: 0.70, 12: 0.80}


def test_patience_counts_evaluations_without_a_strictly_better_score():
    stopping = EarlyStopping(patience=2)
    assert not stopping.update(2, {MONITOR: 0.5})
    assert not stopping.update(4, {MONITOR: 0.6})
    assert not stopping.update(6, {MONITOR: 0.55})
    assert stopping.update(8, {MONITOR: 0.6})  # Equal is not better.
    assert stopping.best_step == 4 and stopping.best == {MONITOR: 0.6}
    assert not EarlyStopping(patience=0).stopped


def scripted_trainer(tmp_path, **overrides):
    config = tiny_config(tmp_path, source_validation_fraction=0.25, early_stopping_patience=2, eval_every=2,
                         steps_per_call=1, **overrides)
    trainer = make_trainer(config)
    evaluate = trainer.evaluate

    def scripted():
        return {**evaluate(), MONITOR: SCRIPTED[trainer.step]}

    trainer.evaluate = scripted
    return trainer


def test_a_run_stops_after_patience_evaluations_and_reports_that_step(tmp_path):
    trainer = scripted_trainer(tmp_path)
    final = trainer.run()
    assert final["steps"] == 8 and final[MONITOR] == 0.60
    assert final["early_stopping"]["best_step"] == 4 and final["early_stopping"]["stopped_early"]
    assert final["early_stopping"]["best"][MONITOR] == 0.60
    assert trainer.checkpoint_step == 8
    logged = json.loads((tmp_path / "logs" / trainer.config.name / "final.json").read_text())
    assert logged["steps"] == 8 and logged["early_stopping"]["best_step"] == 4
    # Resumed, a run that stopped early trains no further step.
    assert scripted_trainer(tmp_path).run(resume=True)["steps"] == 8


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(tmp_path):
    # Stopped abruptly at step 7: its checkpoint at step 6 and the evaluations at 2, 4 and 6 remain.
    # Without replaying them, the resumed run would take step 8's evaluation as its best.
    trainer = scripted_trainer(tmp_path, checkpoint_every=6)
    stop_at(trainer, 7)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert trainer.checkpoint_step == 6
    final = scripted_trainer(tmp_path, checkpoint_every=6).run(resume=True)
    assert final["steps"] == 8 and final["early_stopping"]["best_step"] == 4


def test_early_stopping_needs_held_out_source_images(tmp_path):
    with pytest.raises(TrainingError, match="needs source images held out of training"):
        make_trainer(tiny_config(tmp_path, early_stopping_patience=2))
    with pytest.raises(ValueError, match="early_stopping_patience must be >= 0"):
        tiny_config(tmp_path, early_stopping_patience=-1)


def test_the_source_validation_accuracy_is_evaluated_and_left_out_of_the_domain_accuracy(tmp_path):
    watched = make_trainer(tiny_config(tmp_path / "a", source_validation_fraction=0.25, early_stopping_patience=5))
    plain = make_trainer(tiny_config(tmp_path / "b", source_validation_fraction=0.25))
    watched_results, plain_results = watched.evaluate(), plain.evaluate()
    assert 0 <= watched_results[MONITOR] <= 1 and MONITOR not in plain_results
    assert watched_results["val/domain_acc"] == plain_results["val/domain_acc"]
