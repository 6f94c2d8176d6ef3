"""Optuna tuning as a Hydra sweeper: the sweeper side (sweeper, storage, results) and the job side
(reporting each epoch to the trial, pruning)."""
