"""Which device and how many CPU threads a parallel job of a sweep gets.

With `hydra/launcher=joblib hydra.launcher.n_jobs=N` and `train.device=auto`, Hydra's job k
(`hydra.job.num`, counting every cell of the sweep) runs on GPU k mod n_gpus, so N jobs at a
time on N GPUs each hold their own, and every job gets an equal share (cores // N) of the
machine's cores for its torch threads and loader workers; without GPUs every job runs on the
CPU with its share of the cores.
"""

from __future__ import annotations


def device_for_job(job_num: int, n_gpus: int, cores: int, n_jobs: int) -> tuple[str, int]:
    """(device string, threads) for job `job_num` (0-based) of a sweep running `n_jobs` at a time.

    `device` is `cuda:<job_num mod n_gpus>`, or `cpu` when `n_gpus` is 0; `threads` is
    cores // n_jobs, at least 1.
    """
    if n_jobs < 1 or job_num < 0:
        raise ValueError(f"device_for_job: job_num {job_num}, n_jobs {n_jobs}, expected job_num >= 0 and n_jobs >= 1")
    if n_gpus < 0 or cores < 1:
        raise ValueError(f"device_for_job: n_gpus {n_gpus} and cores {cores}, expected >= 0 and >= 1")
    threads = max(1, cores // n_jobs)
    return (f"cuda:{job_num % n_gpus}" if n_gpus else "cpu"), threads
