"""How a trained run is measured: its export or checkpoint, confusion matrices, features."""
