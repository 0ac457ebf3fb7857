"""DDP child processes that join the same Hydra run directory, in single runs and multiruns alike.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by re-running the command line. Under Hydra it
appends ``hydra.run.dir=<run.dir>`` to the *original* argv, which breaks in two ways
(lightning-hydra-template #393, Lightning #11300, Hydra #2070): in a multirun the children receive
``-m`` and the whole sweep and start sweeps of their own, and ``run.dir`` is not the job's directory,
so every job gets stray output directories. Here each child re-runs exactly this job: its own
overrides, its own output directory, no sweep.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

_SWEEP_FLAGS = {"-m", "--multirun"}
_FLAGS_WITH_VALUE = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"}


def child_command(
    argv: Sequence[str],
    module: str | None,
    task_overrides: Sequence[str],
    output_dir: str,
    local_rank: int,
) -> list[str]:
    """The command that starts DDP rank ``local_rank`` of the current Hydra job."""
    flags: list[str] = []
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _FLAGS_WITH_VALUE and i + 1 < len(args):
            flags += [arg, args[i + 1]]
            i += 2
            continue
        if arg.split("=", 1)[0] in _FLAGS_WITH_VALUE:
            flags.append(arg)
        i += 1
    launcher = [sys.executable, "-m", module] if module else [sys.executable, argv[0]]
    return [
        *launcher,
        *flags,
        *task_overrides,
        f'hydra.run.dir="{output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]


def _hydra_job_command(local_rank: int) -> tuple[list[str], str]:
    """Drop-in for Lightning's ``_hydra_subprocess_cmd`` that re-runs the current job only."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_cfg = HydraConfig.get()
    spec = getattr(__main__, "__spec__", None)
    module = spec.name if spec is not None else None
    argv = list(sys.argv) if module else [to_absolute_path(sys.argv[0]), *sys.argv[1:]]
    command = child_command(
        argv, module, list(hydra_cfg.overrides.task), hydra_cfg.runtime.output_dir, local_rank
    )
    return command, get_original_cwd()


# Environment variables Lightning's launcher sets in the launching process for its children.
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def ddp_job_scope() -> Iterator[None]:
    """Scope of one training job (fit and test) for Lightning's ``ddp`` launcher.

    Inside, children are started with :func:`child_command`. On exit the process group is destroyed
    and the launcher's environment variables are restored: otherwise the next job of a multirun
    would find ``LOCAL_RANK`` set, take itself for an externally started rank, launch no children and
    talk to the previous job's dead process group.
    """
    import torch.distributed as dist
    from pytorch_lightning.strategies.launchers import subprocess_script

    if not hasattr(subprocess_script, "_hydra_subprocess_cmd"):
        raise RuntimeError(
            "pytorch_lightning.strategies.launchers.subprocess_script._hydra_subprocess_cmd is gone; "
            "this Lightning version is not supported by cellseg's DDP launcher (see constraints.txt)."
        )
    saved_env = {key: os.environ.get(key) for key in _LAUNCHER_ENV}
    original = subprocess_script._hydra_subprocess_cmd
    subprocess_script._hydra_subprocess_cmd = _hydra_job_command
    try:
        yield
    finally:
        subprocess_script._hydra_subprocess_cmd = original
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
