"""What a run reads: MNIST, BSDS500, the MNIST-M recipe, image folders, and the tf.data pipelines."""
