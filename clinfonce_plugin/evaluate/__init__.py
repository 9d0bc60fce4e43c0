"""The jobs on a pretrained model: linear evaluation, kNN, fine-tuning, the zoo comparison,
the t-SNE pictures and the k selection, on what pretrained.py reads first."""
