"""Where k-means runs: faiss's GPU index when faiss-gpu sees a GPU, else the CPU, with a
one-line notice on a CUDA machine whose faiss has no GPU support; the clusters agree either
way (checked where faiss-gpu and a GPU are present)."""
import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters import kmeans
from clinfonce_plugin.clusters.kmeans import (GPU_EXTRA_HINT, choose_faiss_device,
                                              faiss_gpu_available, notice_once,
                                              spherical_kmeans)


@pytest.mark.parametrize("requested, faiss_gpus, cuda, on_gpu, notice", [
    ("auto", 1, True, True, False),
    ("auto", 0, True, False, True),    # faiss-cpu on a CUDA machine: CPU, and it says so
    ("auto", 2, False, False, False),  # faiss-gpu but torch without CUDA: CPU, silently
    ("auto", 0, False, False, False),  # a CPU machine: nothing to say
    ("cpu", 1, True, False, False),    # asked for: no notice
    ("gpu", 1, True, True, False),
])
def test_the_device_choice_and_its_notice(requested, faiss_gpus, cuda, on_gpu, notice):
    use_gpu, text = choose_faiss_device(requested, faiss_gpus, cuda)
    assert use_gpu is on_gpu
    assert (text is not None) is notice
    if notice:
        assert "\n" not in text and GPU_EXTRA_HINT in text and "CPU" in text


@pytest.mark.parametrize("faiss_gpus, cuda", [(0, True), (1, False), (0, False)])
def test_gpu_asked_for_without_a_usable_faiss_gpu_is_an_error(faiss_gpus, cuda):
    with pytest.raises(ValueError, match=r"device='gpu' but faiss has no GPU.*\.\[gpu\]"):
        choose_faiss_device("gpu", faiss_gpus, cuda)
    with pytest.raises(ValueError, match="must be one of"):
        choose_faiss_device("cuda", faiss_gpus, cuda)


def test_a_notice_is_printed_once_per_process_on_one_line(capsys, monkeypatch):
    monkeypatch.setattr(kmeans, "_notices_given", set())
    notice_once("k-means runs on the CPU")
    notice_once("k-means runs on the CPU")
    notice_once("something else")
    err = capsys.readouterr().err.splitlines()
    assert err == ["[clinfonce] notice: k-means runs on the CPU",
                   "[clinfonce] notice: something else"]


def _blobs(n=600, d=16, k=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    return (centres[rng.integers(0, k, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.skipif(not faiss_gpu_available(), reason="needs faiss-gpu and a CUDA device")
def test_gpu_and_cpu_kmeans_agree_within_faiss_tolerance():
    x = _blobs()
    labels_gpu, cent_gpu, obj_gpu = spherical_kmeans(x, 6, seed=3, device="gpu")
    labels_cpu, cent_cpu, obj_cpu = spherical_kmeans(x, 6, seed=3, device="cpu")
    # same seeded initial centroids, same Lloyd iterations: float sums in another order
    assert abs(obj_gpu - obj_cpu) <= 1e-4 * abs(obj_cpu)
    assert np.mean(labels_gpu == labels_cpu) >= 0.99
    np.testing.assert_allclose(cent_gpu, cent_cpu, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available() or faiss_gpu_available(),
                    reason="needs a CUDA device with faiss-cpu (no faiss GPU support)")
def test_on_cuda_with_faiss_cpu_auto_runs_on_the_cpu_with_the_notice(capsys, monkeypatch):
    monkeypatch.setattr(kmeans, "_notices_given", set())
    x = _blobs()
    labels, _, obj = spherical_kmeans(x, 6, seed=3, device="auto")
    labels_cpu, _, obj_cpu = spherical_kmeans(x, 6, seed=3, device="cpu")
    assert np.array_equal(labels, labels_cpu) and obj == obj_cpu
    err = capsys.readouterr().err
    assert err.count("[clinfonce] notice: k-means runs on the CPU") == 1
