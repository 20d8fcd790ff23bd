"""A two-rank Horovod job: each rank trains on its own data, then saves its weights.

Run by test_horovod.py under ``horovodrun -np 2``; the argument is the output folder.
"""

import sys
from pathlib import Path

import horovod.tensorflow.keras as hvd
import numpy as np
import tensorflow as tf

hvd.init()
out = Path(sys.argv[1])
rank, size = hvd.rank(), hvd.size()

# Different data on each rank: without averaged gradients the weights would differ.
rng = np.random.default_rng(seed=rank)
x = rng.normal(size=(256, 4)).astype("float32")
y = (x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32") + 0.25).reshape(-1, 1)

tf.keras.utils.set_random_seed(100 + rank)  # different initial weights per rank
model = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(1)])
model.compile(optimizer=hvd.DistributedOptimizer(tf.keras.optimizers.SGD(0.05)), loss="mse")
history = model.fit(
    x, y, batch_size=32, epochs=20, verbose=0,
    callbacks=[hvd.callbacks.BroadcastGlobalVariablesCallback(0)],
)

total = hvd.allreduce(tf.constant([float(rank + 1)]), op=hvd.Sum).numpy()[0]
np.save(out / f"weights-rank{rank}.npy", np.concatenate([w.ravel() for w in model.get_weights()]))
(out / f"rank{rank}.txt").write_text(f"{size} {total} {history.history['loss'][-1]}\n")
