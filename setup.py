"""Installs clinfonce_plugin: cluster-aware contrastive learning for solo-learn."""
from setuptools import find_packages, setup

REQUIREMENTS = [
    "torch>=2.1",
    "torchvision>=0.16",
    "lightning>=2.1,<3",
    "timm>=0.9",
    "scipy>=1.10",
    "faiss-cpu>=1.7.4",
    "hydra-core>=1.3",
    "omegaconf>=2.3",
    "torchmetrics>=0.11",
    "numpy>=1.24",
    "pillow>=9.0",
]

EXTRAS = {
    # k-means and neighbour search on the GPU; the same ``faiss`` module as faiss-cpu, so the
    # one installed last is used (k-means says on one line when it falls back to the CPU)
    "gpu": ["faiss-gpu>=1.15.1"],
    "plots": ["matplotlib>=3.6", "scikit-learn>=1.2"],
    "loggers": ["wandb>=0.15", "tensorboard>=2.11"],
    # the loggers' tests run in CI too (.ci/run installs .[test,plots])
    "test": ["pytest>=7", "wandb>=0.15", "tensorboard>=2.11"],
}

setup(
    name="clinfonce-plugin",
    version="0.1.0",
    description=(
        "Cl-InfoNCE and WCL (cluster-aware contrastive learning) as methods for solo-learn"
    ),
    packages=find_packages(exclude=["tests", "bench", "scripts", "zoo"]),
    python_requires=">=3.9",
    install_requires=REQUIREMENTS,
    extras_require=EXTRAS,
    include_package_data=True,
    package_data={"clinfonce_plugin": ["py.typed"]},
)
