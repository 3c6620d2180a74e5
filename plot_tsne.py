"""t-SNE of the features of MNIST and MNIST-M test images: source-only against DANN.

    python plot_tsne.py                 # the seed-0 runs of run_results.py
    python plot_tsne.py --source_only checkpoints/source_only-seed0 --dann checkpoints/dann-seed0
    python plot_tsne.py --count 500     # fewer images: faster
    python plot_tsne.py --threads 1     # on a machine busy with other jobs

As figure 2 of Ganin & Lempitsky (2015): the same sample of test images from
each domain is passed through each model's feature extractor and embedded in
2-D with scikit-learn's t-SNE, colored by domain. Without adaptation the two
domains form separate clusters; with DANN they mix. About a minute per
panel for 2 x 1500 images on two CPU cores. Bad input prints one `error:`
line and exits 2.
"""

import sys

import numpy as np

from config import Config
from utils import cli
from utils import plots
from utils import scripts
from utils.errors import DataError, ModelError
from utils.files import atomic_path, check_writable
from utils.runtime import startup


def parse_arguments(arguments):
    """The options, with `settings`: the Config of --mnist and --mnistm."""
    parser = cli.Parser(__doc__, settings=cli.TEST_DATA_SETTINGS, renamed={"--source-only": "--source_only"})
    parser.add_argument("--source_only", default="checkpoints/results-paper-source_only-seed0", metavar="PATH",
                        help="Checkpoint folder or .keras export of a source-only run (default: %(default)s).")
    parser.add_argument("--dann", default="checkpoints/results-paper-dann-seed0", metavar="PATH",
                        help="Checkpoint folder or .keras export of a DANN run (default: %(default)s).")
    parser.add_argument("--count", default=1500, type=int,
                        help="Test images drawn from each domain (default: %(default)s).")
    parser.add_argument("--seed", default=0, type=int, help="Seed of the sample and of t-SNE (default: 0).")
    parser.add_argument("--threads", default=None, type=int,
                        help="Cap on t-SNE's threads (default: all cores); 1 on a busy shared machine.")
    parser.add_argument("--out", default="results/tsne.png", metavar="PATH", help="PNG (default: %(default)s).")
    parsed, overrides = parser.parse(arguments)
    if parsed.count < 2:
        raise cli.UsageError(f"--count must be >= 2, got {parsed.count}")
    parsed.settings = Config(**overrides)
    return parsed


def panel(title, run, arguments):
    """(title, 2-D embedding, domain per point) for one model on the seeded sample of both test sets."""
    from utils.data import training_data
    from utils.evaluation import features

    test_sets = training_data.load_test_sets(arguments.settings.mnist_path, arguments.settings.mnistm_path,
                                             run.config.binarize_source)
    rng = np.random.default_rng(arguments.seed)
    samples = []
    for images, _ in test_sets.values():
        # The same seed draws the same images for every model, so the panels compare like with like.
        samples.append(images[np.sort(rng.choice(len(images), min(arguments.count, len(images)), replace=False))])
    points = np.concatenate([features.extract_features(run.classifier, images) for images in samples])
    domains = np.repeat([0, 1], [len(images) for images in samples])
    return f"{title}: {run.name}", features.tsne_embedding(points, seed=arguments.seed,
                                                           threads=arguments.threads), domains


@cli.reports_usage_errors
def main(arguments=None):
    arguments = parse_arguments(sys.argv[1:] if arguments is None else arguments)
    startup.set_up()
    from utils.evaluation import trained_run

    try:
        check_writable(arguments.out)
        panels = [panel(title, trained_run.load_run(path), arguments)
                  for title, path in (("source only", arguments.source_only), ("DANN", arguments.dann))]
        with atomic_path(arguments.out) as temporary:
            plots.save_tsne(temporary, panels)
    except (DataError, ModelError, OSError) as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    print(f"Wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
