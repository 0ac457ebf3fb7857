"""``python -m cellseg.train``: check the command line, then run :func:`cellseg.training.train` for
each job (torch and Lightning are imported only then, so bad input is reported at once)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import check_cluster_trainer, config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored best value so Hydra sweepers can optimise it."""
    from cellseg.training import record_rejection, train

    result = exit_on_bad_input(train, on_rejected=record_rejection)(cfg)
    if result is None:
        return None  # a job of a sweep refused by its checks: recorded in its metrics.json
    best = result.get("best") or {}
    return best.get(cfg.monitor)


def main() -> None:
    run_command("train", _hydra_main, job_checks=[check_cluster_trainer], new_folder=True)


if __name__ == "__main__":
    main()
