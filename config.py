"""The one configuration class. Its defaults reproduce the paper's MNIST -> MNIST-M run.

Edit a default here, or override any field for one run:
    python train.py --mode source_only --seed 3 --epochs 10
    python train.py --preset daipuwei --epochs 100     # a named preset, a field on top

Paper: Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
ICML 2015; Ganin et al., "Domain-Adversarial Training of Neural Networks",
JMLR 2016 (section 5.2, MNIST -> MNIST-M).
"""

import dataclasses
import json
import math

MODES = ("dann", "source_only", "target_only")
# Keras dtype policies, or auto (utils/runtime/precision.py says what each does and what auto picks).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "mirrored", "multi_worker")  # utils/runtime/distribution.py
# Short flags (utils/cli.py): --mnist PATH is --mnist_path PATH.
FLAG_ALIASES = {"mnist": "mnist_path", "mnistm": "mnistm_path", "bsds": "bsds_path"}
# Fields under their former names, still accepted as flags and in saved
# config.json files until the next release: old name -> new name.
RENAMED_FIELDS = {"colour_source": "color_source"}

# Named sets of overrides on the defaults below: `python train.py --preset NAME`,
# with any --field value on top. Each records what it is for and where it comes from.
# Fields that train.py fills in and config.json records, never set on the command line.
RECORDED_FIELDS = {"class_names": "train.py reads it from the source folder",
                   "precision_reason": "train.py records why it chose the precision"}

PRESETS = {
    # The paper (Ganin & Lempitsky, 2015; Ganin et al., JMLR 2016, section 5.2):
    # the defaults themselves. Measured accuracy and run time: docs/measurements.md.
    "paper": {},
    # The reference post's run (its code: Daipuwei/DANN-MNIST-tf2): 128 + 128
    # images a step for 5,000 epochs (about 2.3 M steps), gray source digits
    # (and so a pixel mean over gray digits), and a domain loss that sums the
    # source and the target mean (twice the mean over the batch). Not run here;
    # the accuracy its log reports is quoted in docs/measurements.md.
    "daipuwei": {"batch_size": 256, "epochs": 5000.0, "binarize_source": False,
                 "domain_loss_weight": 2.0},
    # Past the paper, with the paper's networks and no MNIST-M label: source
    # digits in random colors, a learning rate that stays high (0.01 ->
    # 0.0039), lambda rising slowly to 0.85, 50 epochs, and the weights'
    # moving average for evaluation and export. Chosen on the MNIST-M train
    # labels, never the test labels, and confirmed by the label-free judge
    # (docs/recipe.md, docs/reverse_validation.md). Measured accuracy and run
    # time: docs/measurements.md.
    "long": {"epochs": 50.0, "color_source": True, "lr_alpha": 2.5, "lambda_gamma": 2.5,
             "ema_momentum": 0.999},
}


@dataclasses.dataclass(frozen=True)
class Config:
    # data
    mnist_path: str = ""  # Keras mnist.npz; empty: download with keras.datasets.mnist.
    bsds_path: str = ""  # BSR_bsds500.tgz or a folder holding BSR/; empty: download.
    mnistm_path: str = "data/mnist_m.npz"  # Built from mnist_path and bsds_path when missing.
    mnistm_seed: int = 42  # Seed of the MNIST-M backgrounds and crops.
    download_dir: str = "data/downloads"  # Where downloaded archives are cached.
    binarize_source: bool = True  # Source digits as 0/255, like the digits inside MNIST-M.
    # Augmentation: each source digit in training drawn in two random colors,
    # a background and a stroke color (utils/data/pipeline.random_colors). The paper: off.
    color_source: bool = False

    # your own data: image folders instead of the MNIST and MNIST-M files (docs/folders.md)
    source_dir: str = ""  # One subfolder of images per class; empty: MNIST.
    target_dir: str = ""  # Images, loose or in subfolders; labels only evaluate. Empty: MNIST-M.
    source_test_dir: str = ""  # Labelled like source_dir; empty: a held-out part of source_dir.
    target_test_dir: str = ""  # Like target_dir; empty: a held-out part of target_dir.
    held_out_fraction: float = 0.1  # Of each folder, when its test folder is not given.
    # Seed of the held-out parts (test folders, source validation), apart from
    # `seed`, so that runs of every seed hold out the same images.
    held_out_seed: int = 0
    # Of the source train images, held out of training for reverse validation
    # (reverse_validation.py, docs/reverse_validation.md). The JMLR paper: 0.1.
    # 0: none, so the paper's MNIST numbers train on all 60,000 digits.
    source_validation_fraction: float = 0.0
    # Stop once the accuracy on those held-out images has not improved for this many
    # evaluations (utils/training/early_stopping.py); 0: never. Every preset: 0.
    early_stopping_patience: int = 0
    image_size: int = 28  # Images are resized to image_size x image_size pixels.
    image_channels: int = 3  # 3: color (gray images repeat their channel); 1: gray.
    # Folders up to this many MB of uint8 pixels are held in memory; larger
    # ones are decoded from disk batch by batch (utils/data/image_files.py). 0: always from disk.
    in_memory_mb: int = 2000
    # Sorted source class names, set from source_dir by train.py; empty: the digits 0-9.
    class_names: tuple = ()

    # model (paper, figure 4: conv 5x5x32, pool, conv 5x5x48, pool; FC100-FC100-10; GRL-FC100-2)
    conv1_filters: int = 32
    conv2_filters: int = 48
    kernel_size: int = 5
    label_hidden_units: int = 100
    domain_hidden_units: int = 100

    # optimizer: SGD, lr = learning_rate / (1 + lr_alpha * p) ** lr_beta
    learning_rate: float = 0.01
    lr_alpha: float = 10.0
    lr_beta: float = 0.75
    momentum: float = 0.9
    # Moving average of the weights that evaluation and export use (Keras' SGD
    # use_ema): average = ema_momentum * average + (1 - ema_momentum) * weights
    # after each step. 0: off, the weights themselves (the paper).
    ema_momentum: float = 0.0
    # GRL: lambda = lambda_max * (2 / (1 + exp(-lambda_gamma * p)) - 1)
    lambda_gamma: float = 10.0
    lambda_max: float = 1.0
    # total loss = label loss + domain_loss_weight * domain loss (mean over the
    # batch's source and target images). The paper: 1.
    domain_loss_weight: float = 1.0

    # training
    preset: str = "paper"  # The preset these values started from (PRESETS, preset_config).
    mode: str = "dann"  # dann | source_only | target_only
    epochs: float = 30.0  # Passes over the source images (60,000 MNIST digits); p runs 0 -> 1 over them.
    batch_size: int = 128  # Per step; half source, half target (docs/recipe.md).
    seed: int = 0

    # logging, evaluation and checkpoints (in steps)
    log_every: int = 100  # Training metrics are averaged and written per window.
    eval_every: int = 1000  # Evaluation on MNIST test and MNIST-M test.
    checkpoint_every: int = 2000
    run_name: str = ""  # Empty: "<mode>-seed<seed>".
    log_dir: str = "logs"
    checkpoint_dir: str = "checkpoints"

    # system
    steps_per_call: int = 50  # Training steps run inside one compiled call.
    # Equal slices of each batch computed side by side (same gradient as the
    # whole batch); 0: 2 on a CPU with 2+ cores and one replica, else 1 (utils/runtime/devices.py).
    batch_shards: int = 0
    deterministic: bool = False  # TF op determinism: reproducible weights, a little slower.
    # float32 | mixed_bfloat16 | mixed_float16 (GPUs, with loss scaling) | auto:
    # mixed_bfloat16 where bfloat16 is native (AVX512_BF16, AMX, GPUs of compute
    # capability 8.0+), else float32 (utils/runtime/precision.py). train.py records its choice.
    precision: str = "auto"
    precision_reason: str = ""  # Why the run computes in `precision`, recorded by train.py.
    # tf.distribute: auto (one device: none; several GPUs: mirrored) | mirrored
    # | multi_worker (machines from TF_CONFIG). README, "More devices and machines".
    strategy: str = "auto"
    # Logical devices the CPU is split into, each a replica of `mirrored`, to try
    # it without GPUs. Slices (batch_shards) compared with replicas: docs/distributed.md.
    cpu_devices: int = 1
    # multi_worker: seconds a worker waits for a peer that has not joined, or that sends no
    # heartbeat, before it stops with an error; room for a scheduler to start machines apart.
    peer_timeout_seconds: float = 120.0

    def __post_init__(self):
        # JSON gives a list; a tuple keeps the frozen Config hashable and comparable.
        object.__setattr__(self, "class_names", tuple(self.class_names))
        # float() parses "inf" and "nan", and inf would pass the range checks below.
        checks = [(math.isfinite(getattr(self, field.name)),
                   f"{field.name} must be a finite number, got {getattr(self, field.name)}")
                  for field in dataclasses.fields(self) if field.type is float]
        checks += [
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got '{self.mode}'"),
            (self.precision in PRECISIONS,
             f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'"),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.lr_alpha >= 0 and self.lr_beta >= 0 and self.lambda_gamma >= 0,
             "lr_alpha, lr_beta and lambda_gamma must be >= 0"),
            (self.lambda_max >= 0 and self.domain_loss_weight >= 0,
             "lambda_max and domain_loss_weight must be >= 0"),
            (0 <= self.ema_momentum < 1, f"ema_momentum must be in [0, 1), got {self.ema_momentum}"),
            (self.preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}, got '{self.preset}'"),
            (self.batch_size >= 2 and self.batch_size % 2 == 0,
             f"batch_size must be even and >= 2 (half source, half target), got {self.batch_size}"),
            (self.epochs > 0, f"epochs must be > 0, got {self.epochs}"),
            (self.strategy in STRATEGIES,
             f"strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'"),
            (self.cpu_devices >= 1, f"cpu_devices must be >= 1, got {self.cpu_devices}"),
            (self.peer_timeout_seconds > 0,
             f"peer_timeout_seconds must be > 0, got {self.peer_timeout_seconds}"),
            (self.strategy != "multi_worker" or self.cpu_devices == 1,
             "cpu_devices > 1 splits the CPU for strategy mirrored or auto; multi_worker trains one "
             f"replica per CPU machine, got cpu_devices {self.cpu_devices}"),
            (self.batch_shards >= 0 and (self.batch_shards == 0
                                         or (self.batch_size // 2) % self.batch_shards == 0),
             f"batch_shards must be 0 or divide the half batch ({self.batch_size // 2}), "
             f"got {self.batch_shards}"),
        ]
        for name in ("conv1_filters", "conv2_filters", "kernel_size", "label_hidden_units",
                     "domain_hidden_units", "log_every", "eval_every", "checkpoint_every",
                     "steps_per_call"):
            value = getattr(self, name)
            checks.append((value > 0, f"{name} must be > 0, got {value}"))
        # Image folders (docs/folders.md).
        checks += [
            (self.in_memory_mb >= 0, f"in_memory_mb must be >= 0, got {self.in_memory_mb}"),
            (0 < self.held_out_fraction < 1,
             f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}"),
            (0 <= self.source_validation_fraction < 1,
             f"source_validation_fraction must be in [0, 1), got {self.source_validation_fraction}"),
            (self.early_stopping_patience >= 0,
             f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}"),
            (self.image_channels in (1, 3), f"image_channels must be 1 or 3, got {self.image_channels}"),
            (self.image_channels == 3 or not self.color_source,
             "color_source draws colors: it needs image_channels 3"),
            (self.image_size >= smallest_image_size(self.kernel_size),
             f"image_size {self.image_size} is too small for the paper network: two {self.kernel_size}x"
             f"{self.kernel_size} 'valid' convolutions, each followed by a 2x2 pooling, need at least "
             f"{smallest_image_size(self.kernel_size)} pixels a side. Use a larger --image_size"),
            (len(set(self.class_names)) == len(self.class_names) != 1,
             f"class_names must be 2 or more distinct names, got {list(self.class_names)}"),
        ]
        for passed, message in checks:
            if not passed:
                raise ValueError(f"Invalid config: {message}. Fix it in config.py or on the command line.")

    @property
    def classes(self):
        """The class names in label order: class_names, or the ten digits for MNIST."""
        return self.class_names or tuple(str(digit) for digit in range(10))

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, self.image_channels)

    @property
    def uses_folders(self):
        return bool(self.source_dir or self.target_dir)

    @property
    def name(self):
        """The run's folder name under log_dir and checkpoint_dir."""
        return self.run_name or f"{self.mode}-seed{self.seed}"

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"


def smallest_image_size(kernel_size):
    """The smallest side that leaves the paper network (model/networks.py) a 1x1 feature map.

    Each of the two blocks is a 'valid' convolution (side - kernel_size + 1)
    then a 2x2 max-pooling (side // 2), which must leave at least 1 pixel.
    """
    side = 1
    for _ in range(2):  # Undo the blocks from the last: pooling needs 2 * side, the convolution adds k - 1.
        side = 2 * side + kernel_size - 1
    return side


def preset_config(preset="paper", **overrides):
    """The Config of a named preset, with `overrides` on top; the preset's name is recorded in it."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset '{preset}'. Known presets: {', '.join(PRESETS)}.")
    return Config(**{**PRESETS[preset], **overrides, "preset": preset})


def from_saved(settings):
    """The Config of a saved config.json: renamed fields under their new names, and fields this
    version no longer has dropped, so that runs of earlier versions still load. Values are
    checked by Config itself."""
    known = {field.name for field in dataclasses.fields(Config)}
    settings = {RENAMED_FIELDS.get(key, key): value for key, value in settings.items()}
    return Config(**{key: value for key, value in settings.items() if key in known})
