"""Early stopping on a held-out part of the source (config.early_stopping_patience): the JMLR
paper's criterion for both runs of reverse validation (section 5.1.2), off in every preset.

A run stops once the accuracy on its source validation images (held out of
training, labelled: the forward run's S_V, or the reverse run's self-labelled
T_V) has not improved for `patience` evaluations in a row. It ends at that
step, which is its final step, reported as every run's is; the evaluation
with the best accuracy is kept beside it, so that reverse validation can
read that evaluation's score. A resumed run replays its logged evaluations,
so it stops where an uninterrupted one would.
"""

MONITOR = "val/source_validation_acc"


class EarlyStopping:
    def __init__(self, patience):
        self.patience = patience
        self.best_step, self.best = None, None
        self.evaluations_since_best = 0

    @property
    def stopped(self):
        return self.patience > 0 and self.evaluations_since_best >= self.patience

    def update(self, step, results):
        """Takes an evaluation's results (a dict holding MONITOR); returns whether to stop."""
        if self.best is None or results[MONITOR] > self.best[MONITOR]:
            self.best_step, self.best = step, dict(results)
            self.evaluations_since_best = 0
        else:
            self.evaluations_since_best += 1
        return self.stopped

    def replay(self, scalars, up_to_step):
        """Updates with the evaluations logged up to `up_to_step` ({tag: [(step, value)]},
        summaries.read_scalars), as the run made them before it stopped and was resumed."""
        tags = [tag for tag in scalars if tag.startswith("val/")]
        logged = {step for step, _ in scalars.get(MONITOR, []) if step <= up_to_step}
        for step in sorted(logged):
            self.update(step, {tag: value for tag in tags for at, value in scalars[tag] if at == step})

    def record(self, final_step):
        """What final.json says of it."""
        return {"patience": self.patience, "monitor": MONITOR, "stopped_early": self.stopped,
                "final_step": final_step, "best_step": self.best_step, "best": self.best}
