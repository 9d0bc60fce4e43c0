"""Run by test_resume.py in a subprocess: a tiny pretrain that SIGKILLs itself in the middle
of epoch ``kill_epoch`` (after ``kill_batch`` batches), or runs to the end."""
import json
import os
import signal
import sys

import lightning.pytorch as pl
from omegaconf import OmegaConf


class KillMidEpoch(pl.Callback):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx + 1 == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    from clinfonce_plugin.run.pretrain import pretrain

    args = json.loads(sys.argv[1])
    cfg = OmegaConf.create(args["cfg"])
    callbacks = [KillMidEpoch(args["kill_epoch"], args["kill_batch"])] if "kill_epoch" in args else []
    print(pretrain(cfg, callbacks=callbacks))


if __name__ == "__main__":
    main()
