"""Where a run computes: TensorFlow start-up, devices and strategies, precision, the CPU."""
