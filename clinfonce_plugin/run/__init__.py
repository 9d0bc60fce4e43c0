"""The pretrain job and its lifecycle: the runner (pretrain.py), the run directory and its
lock, checkpoints written and read, callbacks, loggers, the zoo manifest."""
