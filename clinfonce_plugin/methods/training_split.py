"""The training split's metadata a method is built on. The job that builds the method reads
the split once (the pretrain runner; the kNN job, or the projector's rebuild) and passes its
``SampleInfo``; a method never opens the split's files itself."""
from typing import Optional

from clinfonce_plugin.clusters.sample_info import SampleInfo


def given_sample_info(method: str, sample_info: Optional[SampleInfo]) -> SampleInfo:
    """``sample_info``, or a ValueError saying that ``method`` is built with it."""
    if sample_info is None:
        raise ValueError(f"method {method} is built on the training split's metadata: the job "
                         f"building it passes sample_info (the split it read)")
    return sample_info
