"""Exact incremental inference of one-pixel changes through a convolutional classifier.

Changing one pixel changes a conv net's feature maps only inside a window that grows by
a kernel at each convolution and shrinks by the stride at each pooling: on the study's
ConvNet at 100x100 pixels the window is 5x5 after each of the three blocks, against maps of
100x100, 50x50 and 25x25. `LocalEvaluator` caches the clean image's feature maps once,
then, for each candidate, recomputes only its window layer after layer (the window's new
input = the cached map with the previous window pasted in, then a VALID convolution or
pooling of it) until a layer that mixes all positions (Flatten, global pooling, Dense,
anything unknown). There the window is pasted into the cached map and the rest of the
model runs as usual. The result is the model's own output, not an approximation: the
same weights and operations on the same values, up to float summation order (checked by
`max_deviation`; the attack refuses the shortcut when it disagrees with the model).

Supported: a chain of layers (nested Functional or Sequential models are flattened), with
Conv2D (channels last, no dilation or groups), MaxPooling2D, AveragePooling2D (VALID) and
point-wise layers (BatchNormalization over channels, activations, dropout, rescaling)
windowed; any layer after the first other one runs in full. Models that branch (ResNets'
residual additions) are refused with `Unsupported` and attacked by full evaluation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

__all__ = ["LocalEvaluator", "Unsupported", "max_deviation", "flatten_layers"]

# Layers computed position by position: a window of them is the layer applied to the window.
POINTWISE = ("BatchNormalization", "ReLU", "LeakyReLU", "ELU", "PReLU", "Activation", "Dropout",
             "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
             "Rescaling", "Identity", "Softmax")
# Stop windowing once a window covers this share of its map: a full pass is then cheaper.
MAX_WINDOW_SHARE = 0.5
# Most window positions for which a Flatten + Dense boundary is updated position by position.
MAX_POSITIONS = 400


class Unsupported(ValueError):
    """The model's structure does not allow incremental evaluation."""


@dataclasses.dataclass(frozen=True)
class _Window:
    """Static geometry of one windowed convolution or pooling layer."""

    layer: object
    kind: str  # "conv", "max" or "avg"
    kernel: tuple  # (kh, kw)
    strides: tuple  # (sh, sw)
    pad_before: tuple  # (top, left) of the padded input
    pad_after: tuple  # (bottom, right)
    patch_in: tuple  # (h, w) of the window entering
    patch_out: tuple  # (h, w) of the window leaving
    need: tuple  # (h, w) of the input window the output window reads
    out_map: tuple  # (H, W) of the output map
    padded: tuple  # (H, W, C) of the padded input map the windows are read from


def flatten_layers(model):
    """The layers of a chain model, nested Functional/Sequential models flattened."""
    import keras
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            out.extend(flatten_layers(layer))
            continue
        inbound = getattr(layer, "_inbound_nodes", [])
        if any(len(getattr(node, "input_tensors", ())) > 1 for node in inbound):
            raise Unsupported(f"layer {layer.name} ({type(layer).__name__}) merges branches")
        out.append(layer)
    return out


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(x) for x in v)


def _window_geometry(layer, kind, in_shape, patch):
    """Output map, padding and window sizes of a conv/pool layer for an input window."""
    if kind == "conv":
        kernel = tuple(int(d) for d in layer.kernel.shape[:2])
        strides = _pair(layer.strides)
    else:
        kernel, strides = _pair(layer.pool_size), _pair(layer.strides)
    padding = layer.padding.lower()
    out_map, before, after, patch_out, need = [], [], [], [], []
    for n, k, s, h in zip(in_shape[:2], kernel, strides, patch):
        o = -(-n // s) if padding == "same" else (n - k) // s + 1
        total = max((o - 1) * s + k - n, 0) if padding == "same" else 0
        ho = min(o, (h + k - 2) // s + 1)
        out_map.append(o)
        before.append(total // 2)
        after.append(max(total - total // 2, 0))
        patch_out.append(ho)
        need.append((ho - 1) * s + k)
    padded = (in_shape[0] + before[0] + after[0], in_shape[1] + before[1] + after[1], in_shape[2])
    return _Window(layer, kind, kernel, strides, tuple(before), tuple(after), tuple(patch),
                   tuple(patch_out), tuple(need), tuple(out_map), padded)


def _kind(layer):
    name = type(layer).__name__
    if name in POINTWISE:
        if name == "BatchNormalization" and layer.axis not in (-1, 3, [3], [-1]):
            return None
        return "point"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    if name == "Conv2D":
        if _pair(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
            return None
        return "conv"
    if name == "MaxPooling2D":
        return "max"
    if name == "AveragePooling2D" and layer.padding.lower() == "valid":
        return "avg"
    return None


class LocalEvaluator:
    """Probabilities of one-pixel perturbations of cached images, computed incrementally.

    Args:
      model: a Keras chain model mapping [N, H, W, C] images to probabilities.
      image_shape: (H, W, C).
    Raises:
      Unsupported: the model branches, or its first layer already mixes positions.
    """

    def __init__(self, model, image_shape):
        self.image_shape = tuple(int(d) for d in image_shape)
        layers = flatten_layers(model)
        self.stages, shape, patch = [], self.image_shape, (1, 1)
        split = len(layers)
        for i, layer in enumerate(layers):
            kind = _kind(layer)
            if kind is None:
                split = i
                break
            if kind == "point":
                self.stages.append(("point", layer))
                shape = tuple(layer.compute_output_shape((None, *shape))[1:])
                continue
            geo = _window_geometry(layer, kind, shape, patch)
            if geo.patch_out[0] * geo.patch_out[1] > MAX_WINDOW_SHARE * np.prod(geo.out_map):
                split = i
                break
            self.stages.append((kind, geo))
            patch = geo.patch_out
            shape = tuple(layer.compute_output_shape((None, *shape))[1:])
            if tuple(shape[:2]) != geo.out_map:
                raise Unsupported(f"layer {layer.name}: output {shape[:2]} != {geo.out_map}")
        if not any(kind != "point" for kind, _ in self.stages):
            raise Unsupported("the model's first layers mix all positions; nothing to window")
        self.rest = layers[split:]
        self.boundary_shape = shape  # (H, W, C) of the map where windowing stops
        self.patch = patch
        self.dense = self._linear_boundary()

    def _linear_boundary(self):
        """Flatten then Dense after the windows: the Dense's product is updated by the
        window's change alone, one matrix product per window position (at most
        `MAX_POSITIONS`), instead of recomputed over the whole map."""
        names = [type(layer).__name__ for layer in self.rest[:2]]
        if names != ["Flatten", "Dense"]:
            return None
        (h, w, c), (ph, pw) = self.boundary_shape, self.patch
        positions = (h - ph + 1) * (w - pw + 1)
        dense = self.rest[1]
        if positions > MAX_POSITIONS or tuple(dense.kernel.shape)[0] != h * w * c:
            return None
        return dense

    def _window_kernels(self):
        """[positions, ph * pw * C, D]: the Dense kernel's rows each window position reads."""
        (h, w, c), (ph, pw) = self.boundary_shape, self.patch
        kernel = tf.reshape(tf.convert_to_tensor(self.dense.kernel), (h, w, c, -1))
        return tf.stack([tf.reshape(kernel[i:i + ph, j:j + pw], (ph * pw * c, -1))
                         for i in range(h - ph + 1) for j in range(w - pw + 1)])

    @property
    def windowed(self):
        return [geo.layer.name for kind, geo in self.stages if kind != "point"]

    def cache_bytes_per_image(self):
        """Bytes of the cached maps of one image (the per-image entries of `cache_spec`)."""
        return 4 * sum(int(np.prod(spec.shape[1:])) for spec in self.cache_spec()
                       if spec.shape[0] is None)

    # ---- the clean images' maps

    def prepare(self, images):
        """Cached maps of `images` [N, H, W, C]: each windowed layer's padded input, then
        the map where windowing stops."""
        x, cache = tf.convert_to_tensor(images, tf.float32), []
        for kind, item in self.stages:
            if kind == "point":
                x = item(x, training=False)
                continue
            fill = x.dtype.min if kind == "max" else 0.0
            cache.append(tf.pad(x, [[0, 0], [item.pad_before[0], item.pad_after[0]],
                                    [item.pad_before[1], item.pad_after[1]], [0, 0]],
                                constant_values=fill))
            x = self._apply(kind, item, x, padding=item.layer.padding.upper())
        cache.append(x)
        if self.dense is not None:  # the Dense's product on the clean maps, before activation
            flat = tf.reshape(x, (tf.shape(x)[0], -1))
            product = tf.matmul(flat, tf.convert_to_tensor(self.dense.kernel))
            cache += [product, self._window_kernels()]
        return cache

    def cache_spec(self):
        """TensorSpecs of `prepare`'s output: the padded maps, the boundary map and, with a
        linear boundary, the Dense's clean product and its kernel rows per position."""
        specs = [tf.TensorSpec((None, *geo.padded), tf.float32)
                 for kind, geo in self.stages if kind != "point"]
        specs.append(tf.TensorSpec((None, *self.boundary_shape), tf.float32))
        if self.dense is not None:
            d = int(self.dense.kernel.shape[1])
            (h, w, c), (ph, pw) = self.boundary_shape, self.patch
            specs += [tf.TensorSpec((None, d), tf.float32),
                      tf.TensorSpec(((h - ph + 1) * (w - pw + 1), ph * pw * c, d), tf.float32)]
        return specs

    # ---- candidates

    def probabilities(self, cache, rows, x, y, values):
        """Model output for image `rows` [R] (into the cache) with pixel (x, y) [R] set to
        `values` [R, C]."""
        patch = tf.reshape(values, (-1, 1, 1, self.image_shape[2]))
        y0, x0 = tf.cast(y, tf.int32), tf.cast(x, tf.int32)
        maps = iter(cache)
        for kind, item in self.stages:
            if kind == "point":
                patch = item(patch, training=False)
                continue
            patch, y0, x0 = self._window(kind, item, next(maps), rows, patch, y0, x0)
        if self.dense is not None:
            out, rest = self._dense_update(next(maps), next(maps), next(maps), rows, patch,
                                           y0, x0), self.rest[2:]
        else:
            out, rest = self._paste(next(maps), rows, patch, y0, x0), self.rest
        for layer in rest:
            out = layer(out, training=False)
        return out

    def _dense_update(self, full, product, kernels, rows, patch, y0, x0):
        """The boundary Dense's output: clean product + change of the window x its rows."""
        (h, w, c), (ph, pw) = self.boundary_shape, self.patch
        r = tf.shape(rows)[0]
        at = ((rows * (h * w))[:, None, None] + ((y0[:, None] + tf.range(ph)) * w)[:, :, None]
              + (x0[:, None] + tf.range(pw))[:, None, :])
        change = tf.reshape(patch - tf.gather(tf.reshape(full, (-1, c)), at), (r, ph * pw * c))
        position = y0 * (w - pw + 1) + x0
        n = int(kernels.shape[0])
        parts = tf.dynamic_partition(change, position, n)
        where = tf.dynamic_partition(tf.range(r), position, n)
        update = tf.dynamic_stitch(where, [tf.matmul(parts[p], kernels[p]) for p in range(n)])
        out = tf.gather(product, rows) + update
        if self.dense.use_bias:
            out = out + tf.convert_to_tensor(self.dense.bias)
        return self.dense.activation(out) if self.dense.activation is not None else out

    def _window(self, kind, geo, padded, rows, patch, y0, x0):
        (kh, kw), (sh, sw), (pt, pl) = geo.kernel, geo.strides, geo.pad_before
        (ho, wo), (hn, wn), (h, w) = geo.patch_out, geo.need, geo.patch_in
        _, hp, wp, c = padded.shape
        # First output row/column the window touches, shifted to keep the window inside.
        oy = tf.clip_by_value(-((kh - 1 - pt - y0) // sh), 0, geo.out_map[0] - ho)
        ox = tf.clip_by_value(-((kw - 1 - pl - x0) // sw), 0, geo.out_map[1] - wo)
        wy = oy[:, None] * sh + tf.range(hn)[None]  # rows of the padded input read [R, hn]
        wx = ox[:, None] * sw + tf.range(wn)[None]
        # Flat indices (one GatherV2 each): the cached input, and the incoming window,
        # whose rows y0 .. y0 + h are padded rows pt + y0 ...
        cached = (rows * (hp * wp))[:, None, None] + (wy * wp)[:, :, None] + wx[:, None, :]
        window = tf.gather(tf.reshape(padded, (-1, c)), cached)
        py, px = wy - (y0 + pt)[:, None], wx - (x0 + pl)[:, None]
        inside = (((py >= 0) & (py < h))[:, :, None] & ((px >= 0) & (px < w))[:, None, :])
        r = tf.shape(rows)[0]
        own = ((tf.range(r) * (h * w))[:, None, None]
               + (tf.clip_by_value(py, 0, h - 1) * w)[:, :, None]
               + tf.clip_by_value(px, 0, w - 1)[:, None, :])
        window = tf.where(inside[..., None], tf.gather(tf.reshape(patch, (-1, c)), own), window)
        return self._apply(kind, geo, window, padding="VALID"), oy, ox

    @staticmethod
    def _apply(kind, geo, x, padding):
        layer = geo.layer
        if kind == "conv":
            out = tf.nn.convolution(x, tf.convert_to_tensor(layer.kernel), strides=geo.strides,
                                    padding=padding)
            if layer.use_bias:
                out = out + tf.convert_to_tensor(layer.bias)
            return layer.activation(out) if layer.activation is not None else out
        pool = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
        return pool(x, geo.kernel, geo.strides, padding)

    @staticmethod
    def _paste(full, rows, patch, y0, x0):
        """Cached maps of `rows` with `patch` [R, h, w, C] written at (y0, x0)."""
        out = tf.gather(full, rows)
        r, h, w = tf.shape(patch)[0], patch.shape[1], patch.shape[2]
        shape = (r, h, w)
        index = tf.stack([tf.broadcast_to(tf.range(r)[:, None, None], shape),
                          tf.broadcast_to((y0[:, None] + tf.range(h)[None])[:, :, None], shape),
                          tf.broadcast_to((x0[:, None] + tf.range(w)[None])[:, None, :], shape)],
                         axis=-1)
        return tf.tensor_scatter_nd_update(out, index, patch)


def max_deviation(evaluator, call, images, n_pixels=16, seed=0, value_range=(0.0, 1.0)):
    """Largest |difference| between `evaluator` and a full call of the model on random
    one-pixel changes of `images` (values drawn in `value_range`)."""
    rng = np.random.default_rng(seed)
    n, (h, w, c) = len(images), evaluator.image_shape
    rows = np.repeat(np.arange(n), n_pixels).astype(np.int32)
    x, y = rng.integers(0, w, len(rows)), rng.integers(0, h, len(rows))
    x[:2], y[:2] = [0, w - 1], [0, h - 1]  # the corners: padding on both sides
    values = rng.uniform(*value_range, (len(rows), c)).astype(np.float32)
    perturbed = np.repeat(np.asarray(images, np.float32), n_pixels, axis=0)
    perturbed[np.arange(len(rows)), y, x] = values
    cache = evaluator.prepare(images)
    fast = evaluator.probabilities(cache, tf.constant(rows), tf.constant(x), tf.constant(y),
                                   tf.constant(values))
    return float(np.max(np.abs(np.asarray(fast) - np.asarray(call(tf.constant(perturbed))))))
