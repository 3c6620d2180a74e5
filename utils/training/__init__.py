"""How a run trains: the loop, the step on slices and replicas, stopping, its folders, TensorBoard."""
