"""Classifier architectures: an encoder to a 256-d latent bottleneck and a linear head.

Every architecture is a function ``build_<name>(image_shape, latent_dim, n_classes, **kw)``
returning ``(encoder, head)``: ``encoder`` maps stretched images (NHWC float32) to the
latent (no activation), ``head`` maps the latent to logits. The latent is a first-class
output: the MMD loss, the attacker and the study read it. Initialisation follows the
study: bottleneck weights N(0, 0.005), output N(0, 0.01), zero biases.

Under a ``mixed_float16`` policy (``train.mixed_precision`` on a GPU) the convolutions run
in float16 but the latent and logits layers stay float32, so that the MMD (bandwidths down
to 1e-6), the softmax, the losses and the export's outputs see float32.
"""

from __future__ import annotations

import keras
from keras import layers

from tfgal.errors import ConfigError

__all__ = ["build", "build_convnet", "build_resnet18", "build_head", "ARCHITECTURES",
           "LATENT_DIM", "N_CLASSES", "BN_MOMENTUM"]

LATENT_DIM = 256
N_CLASSES = 3
BOTTLENECK_INIT_STD = 0.005
OUTPUT_INIT_STD = 0.01
# PyTorch's default (momentum 0.1 there), as in the study; Keras' 0.99 lags far behind the
# batch statistics in short runs, and inference then collapses to one class.
BN_MOMENTUM = 0.9


def _bottleneck(latent_dim, seed):
    return layers.Dense(
        latent_dim, name="latent", dtype="float32",  # float32 under mixed precision too
        kernel_initializer=keras.initializers.RandomNormal(0.0, BOTTLENECK_INIT_STD, seed=seed),
        bias_initializer="zeros")


def build_head(latent_dim=LATENT_DIM, n_classes=N_CLASSES, seed=None):
    """latent -> logits, one dense layer."""
    latent = keras.Input((latent_dim,), name="latent")
    logits = layers.Dense(
        n_classes, name="logits", dtype="float32",  # float32 under mixed precision too
        kernel_initializer=keras.initializers.RandomNormal(0.0, OUTPUT_INIT_STD, seed=seed),
        bias_initializer="zeros")(latent)
    return keras.Model(latent, logits, name="head")


def build_convnet(image_shape=(100, 100, 3), latent_dim=LATENT_DIM, n_classes=N_CLASSES,
                  seed=None, filters=(8, 16, 32), kernels=(5, 3, 3), dropout=0.0):
    """The study's ConvNet: three conv-BN-ReLU-maxpool blocks, flatten, latent, output."""
    images = keras.Input(image_shape, name="images")
    x = images
    for i, (f, k) in enumerate(zip(filters, kernels)):
        x = layers.Conv2D(f, k, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    latent = _bottleneck(latent_dim, seed)(x)
    encoder = keras.Model(images, latent, name="convnet_encoder")
    return encoder, build_head(latent_dim, n_classes, seed)


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def build_resnet18(image_shape=(100, 100, 3), latent_dim=LATENT_DIM, n_classes=N_CLASSES,
                   seed=None, width=64, dropout=0.5):
    """ResNet18 without pretraining; dropout after the last stage, GAP, 512 -> latent."""
    images = keras.Input(image_shape, name="images")
    x = layers.Conv2D(width, 7, 2, padding="same", use_bias=False, name="stem_conv")(images)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, mult in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, width * mult, stride, f"stage{stage}_block{block}")
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    latent = _bottleneck(latent_dim, seed)(x)
    encoder = keras.Model(images, latent, name="resnet18_encoder")
    return encoder, build_head(latent_dim, n_classes, seed)


ARCHITECTURES = {"convnet": build_convnet, "resnet18": build_resnet18}


def build(name, **kwargs):
    """Builds `(encoder, head)` of a named architecture."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown model {name!r}", key="model.name", valid=sorted(ARCHITECTURES))
    return ARCHITECTURES[name](**kwargs)
