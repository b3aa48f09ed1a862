"""Local core detection (``orchestrator.inputs.cores``) from cgroup files laid out by the test."""
from __future__ import annotations

import os

import pytest

from orchestrator.inputs.cores import cgroup_quota, local_cores


def _layout(tmp_path, proc: str, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / "cg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "cgroup").write_text(proc)
    return tmp_path / "cg", tmp_path / "cgroup"


def test_cgroup_v2_quota(tmp_path):
    root, proc = _layout(tmp_path, "0::/app\n", {"app/cpu.max": "150000 100000\n"})
    assert cgroup_quota(root, proc) == pytest.approx(1.5)


def test_cgroup_v2_without_quota(tmp_path):
    root, proc = _layout(tmp_path, "0::/app\n", {"app/cpu.max": "max 100000\n"})
    assert cgroup_quota(root, proc) is None


def test_cgroup_v1_quota_and_none(tmp_path):
    root, proc = _layout(tmp_path, "1:cpu,cpuacct:/job\n", {"cpu,cpuacct/job/cpu.cfs_quota_us": "50000",
                                                             "cpu,cpuacct/job/cpu.cfs_period_us": "100000"})
    assert cgroup_quota(root, proc) == pytest.approx(0.5)
    root, proc = _layout(tmp_path / "b", "1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
    assert cgroup_quota(root, proc) is None


def test_the_smaller_of_affinity_and_quota_wins(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    root, proc = _layout(tmp_path, "0::/\n", {"cpu.max": f"{affinity * 50000} 100000\n"})
    assert local_cores(root, proc) == (pytest.approx(affinity / 2), "cgroup CPU quota")
    root, proc = _layout(tmp_path / "b", "0::/\n", {"cpu.max": "max 100000\n"})
    assert local_cores(root, proc) == (affinity, "CPU affinity")
