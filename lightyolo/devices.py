"""Which device and how many CPU threads a parallel job of a sweep gets.

With `hydra/launcher=joblib hydra.launcher.n_jobs=N` and `train.device=auto`, job k of N runs
on GPU k mod n_gpus (jobs beyond the GPU count share them round-robin) and gets an equal
share of the machine's cores for its torch threads and loader workers; without GPUs every
job runs on the CPU with its share of the cores.
"""

from __future__ import annotations


def device_for_job(job_num: int, n_gpus: int, cores: int, n_jobs: int) -> tuple[str, int]:
    """(device string, threads) for parallel job `job_num` (0-based) of `n_jobs`.

    `device` is `cuda:<job_num mod n_gpus>`, or `cpu` when `n_gpus` is 0; `threads` is
    cores // n_jobs, at least 1.
    """
    if n_jobs < 1 or not 0 <= job_num < n_jobs:
        raise ValueError(f"device_for_job: job_num {job_num} of n_jobs {n_jobs}, expected 0 <= job_num < n_jobs")
    if n_gpus < 0 or cores < 1:
        raise ValueError(f"device_for_job: n_gpus {n_gpus} and cores {cores}, expected >= 0 and >= 1")
    threads = max(1, cores // n_jobs)
    return (f"cuda:{job_num % n_gpus}" if n_gpus else "cpu"), threads
