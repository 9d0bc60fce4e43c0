"""``data.augment_on: device``: the workers decode and crop (``worker``), the random ops run
batched on the model's device (``batched``, plain torch) from a Lightning callback
(``device``). See docs/data-pipeline.md."""
