"""Training the learned lifter (train.py), its mocap data (mocap.py) and pose-error metrics (metrics.py); the
runtime (core/, addon/) never imports this package, and the extension zip leaves it out."""
