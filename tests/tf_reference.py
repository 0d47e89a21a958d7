"""The official network written with TensorFlow ops, as the oracle for `vdeblur import-tf`.

Mirrors the structure of the authors' ``models/models.py`` ``generator`` and ``util/util.py``
``RDAB`` (github.com/zhuyeye/Attentive-Deblurring) with plain ``tf.nn`` ops in TF1-style graph
mode: 'SAME' convs with bias and ReLU (slim.conv2d defaults), 4x4 stride-2 'SAME' transposed
convs, ``tf.compat.v1.image.resize_images`` (bilinear, no half-pixel offset), serial spatial
then channel attention, variables under ``g_net/...`` shared across scales, a global step named
``Variable`` and Adam slots, saved by ``tf.compat.v1.train.Saver`` as a real bundle checkpoint.

Run as a script (needs ``pip install tensorflow-cpu``); the oracle test runs it in a child
process, because importing TensorFlow next to torch aborts later tests (two LLVMs clash).
Regenerate the committed fixture with:
    python tests/tf_reference.py tests/data/tf_tiny --preset tiny
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# What the script writes: the committed tiny fixture, or the paper configuration for the oracle test.
PRESETS = {
    "tiny": dict(config=dict(widths=(2, 4, 8), blocks_per_group=1, kernel_size=3, attention_reduction=2),
                 shape=(1, 32, 48, 3), prefix="model.ckpt-42", step=42, seed=1),
    "paper": dict(config={}, shape=(1, 64, 96, 3), prefix="deblur.model-675000", step=675000, seed=3),
}


def save_reference(prefix: str | Path, config, inputs: np.ndarray, seed: int = 0, step: int = 675000,
                   weight_scale: float = 1.0) -> np.ndarray:
    """Build the graph for ``config`` (a vdeblur ModelConfig) with random weights, save it at
    ``prefix`` and return TF's finest output (NHWC) for ``inputs`` (NHWC float32)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(seed)
    n_blocks = config.blocks_per_group
    k = config.kernel_size

    def get(name, values):
        return v1.get_variable(name, initializer=values.astype(np.float32))

    def conv(x, out, size, scope, stride=1, relu=True):
        with v1.variable_scope(scope):
            cin = int(x.shape[-1])
            limit = weight_scale * np.sqrt(6.0 / (size * size * (cin + out)))
            w = get("weights", rng.uniform(-limit, limit, (size, size, cin, out)))
            b = get("biases", rng.normal(0.0, 0.05, out))
            y = tf.nn.bias_add(tf.nn.conv2d(x, w, [1, stride, stride, 1], "SAME"), b)
        return tf.nn.relu(y) if relu else y

    def deconv(x, out, scope):
        with v1.variable_scope(scope):
            n, h, w_, cin = (int(d) for d in x.shape)
            limit = weight_scale * np.sqrt(6.0 / (16 * (cin + out)))
            w = get("weights", rng.uniform(-limit, limit, (4, 4, out, cin)))
            b = get("biases", rng.normal(0.0, 0.05, out))
            y = tf.nn.conv2d_transpose(x, w, [n, 2 * h, 2 * w_, out], [1, 2, 2, 1], "SAME")
        return tf.nn.relu(tf.nn.bias_add(y, b))

    def rdab(x, f, scope):
        hidden = max(f // config.attention_reduction, 1)
        with v1.variable_scope(scope):
            y = conv(x, f, k, "conv2d-1")
            y = conv(y, f, k, "conv2d-2", relu=False)
            with v1.variable_scope("blur_attention"):
                a = conv(y, hidden, 1, "conv2d-1")
                y = y * tf.sigmoid(conv(a, 1, 1, "conv2d-2", relu=False))
            with v1.variable_scope("channel_attention"):
                a = tf.reduce_mean(y, axis=[1, 2], keepdims=True)
                a = conv(a, hidden, 1, "conv2d-1")
                y = y * tf.sigmoid(conv(a, f, 1, "conv2d-2", relu=False))
            return y + x

    def module(x):
        w1, w2, w3 = config.widths
        enc = []
        for g, (width, stride) in enumerate(((w1, 1), (w2, 2), (w3, 2)), start=1):
            x = conv(x, width, k, f"enc{g}_1", stride=stride)
            for b in range(2, n_blocks + 2):
                x = rdab(x, width, f"enc{g}_{b}")
            enc.append(x)
        for level, width, up in ((3, w3, w2), (2, w2, w1)):
            for b in range(n_blocks, 0, -1):
                x = rdab(x, width, f"dec{level}_{b}")
            x = deconv(x, up, f"dec{level - 1}_{n_blocks + 1}") + enc[level - 2]
        for b in range(n_blocks, 0, -1):
            x = rdab(x, w1, f"dec1_{b}")
        return conv(x, 3, k, "dec1_0", relu=False)

    graph = tf.Graph()
    with graph.as_default():
        placeholder = v1.placeholder(tf.float32, inputs.shape)
        n, h, w, _ = inputs.shape
        outputs = []
        with v1.variable_scope("g_net", reuse=v1.AUTO_REUSE):
            pred = placeholder
            for i in range(config.num_scales):
                scale = 0.5 ** (config.num_scales - i - 1)
                size = [int(round(h * scale)), int(round(w * scale))]
                blur = v1.image.resize_images(placeholder, size, method=0)
                pred = tf.stop_gradient(v1.image.resize_images(pred, size, method=0))
                pred = module(tf.concat([blur, pred], axis=3))
                outputs.append(pred)
        global_step = v1.Variable(step, dtype=tf.int32, trainable=False)  # saved as "Variable"
        v1.train.AdamOptimizer(1e-4).minimize(tf.reduce_mean(outputs[-1] ** 2), global_step=global_step)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            result = sess.run(outputs[-1], {placeholder: inputs})
            v1.train.Saver().save(sess, str(prefix), write_meta_graph=False, write_state=False)
    return result


def make(folder: Path, preset: str) -> None:
    """Write PREFIX.index/.data, input.npy and TensorFlow's output tf_output.npy into ``folder``."""
    from vdeblur.network import ModelConfig

    p = PRESETS[preset]
    folder.mkdir(parents=True, exist_ok=True)
    inputs = np.random.default_rng(7).random(p["shape"], dtype=np.float32)
    out = save_reference(folder / p["prefix"], ModelConfig(**p["config"]), inputs, seed=p["seed"], step=p["step"])
    np.save(folder / "input.npy", inputs)
    np.save(folder / "tf_output.npy", out)


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    args = parser.parse_args()
    make(args.folder, args.preset)
