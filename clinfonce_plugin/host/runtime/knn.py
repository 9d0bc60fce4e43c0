"""The online kNN of solo-learn's ``knn_eval`` config key, on the bundled runtime.

solo-learn's BaseMethod, with ``knn_eval.enabled``, logs ``val_knn_acc1`` / ``val_knn_acc5``
(percent) at the end of every validation epoch: the weighted kNN (k = ``knn_eval.k``,
``knn_eval.distance_func``, temperature 0.07 for cosine) of the validation images' backbone
features against training features. solo-learn collects the training features from the
training steps (the augmented large crops, in train mode, while the weights change); here
both sets come from one deterministic pass at validation time (``clusters.embedding_pass``:
the eval transform, the model in eval mode, every image once, sharded over the ranks and
gathered, so every rank computes the same result), i.e. the offline ``main_knn.py``
protocol at one k. The classifier is ``metrics.knn.weighted_knn_accuracy``.
"""
from typing import Callable, ContextManager, Optional, Tuple

import torch
from torch.utils.data import Dataset

from clinfonce_plugin.clusters.embedding_pass import embed_dataset
from clinfonce_plugin.config import KNN
from clinfonce_plugin.metrics.knn import weighted_knn_accuracy

# solo-learn's WeightedKNNClassifier defaults, which main_knn.py's config shares
TEMPERATURE = KNN["temperature"].default
MAX_MATRIX_ELEMENTS = KNN["max_matrix_elements"].default


@torch.no_grad()
def online_knn_accuracy(embed: Callable[[torch.Tensor], torch.Tensor], dim: int,
                        train: Tuple[Dataset, torch.Tensor], val: Tuple[Dataset, torch.Tensor],
                        k: int, distance: str, num_classes: int, batch_size: int,
                        num_workers: int = 0, device: Optional[torch.device] = None,
                        forward_context: Optional[Callable[[], ContextManager]] = None
                        ) -> Tuple[float, float]:
    """(top-1 %, top-5 %) of the weighted kNN of ``val`` against ``train``.

    Args:
        embed: (B, C, H, W) images -> (B, dim) features (the backbone, in eval mode).
        train, val: (dataset of (image tensor, target) items under a deterministic
            transform, (N,) labels of its items in order; -1 where unknown). Training images
            without a label are left out (they cannot vote); every validation image needs one.
        k: neighbours; clipped to the number of labelled training images.
        distance: "cosine" or "euclidean".
        num_classes, batch_size, num_workers, device, forward_context: as their names say
            (see ``embed_dataset``).

    torch's random generator is left as it was (the pass's draws are undone).
    """
    feats = {}
    # the data loaders draw their seeds from torch's generator: restored afterwards, so
    # that switching the monitor on does not change the training run
    with torch.random.fork_rng(devices=[]):
        for name, (images, _) in (("train", train), ("val", val)):
            feats[name] = embed_dataset(embed, images, dim, batch_size, num_workers, device,
                                        forward_context)
    y_train = torch.as_tensor(train[1], device=feats["train"].device).long()
    y_val = torch.as_tensor(val[1], device=feats["val"].device).long()
    known = y_train >= 0
    x_train, y_train = feats["train"][known], y_train[known]
    k = min(int(k), int(known.sum()))
    acc = weighted_knn_accuracy(x_train, y_train, feats["val"], y_val, [k], distance,
                                TEMPERATURE, num_classes, MAX_MATRIX_ELEMENTS)
    return acc[k]
