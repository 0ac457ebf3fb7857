"""cellseg's Hydra plugins: the Optuna sweeper and the submitit launchers that requeue pre-empted jobs."""
