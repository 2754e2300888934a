"""The benchmark workloads: a fixed, documented layer set, in three sizes.

* ``full``: the layer set of the benchmark issue (``bench/README.md`` lists it with its sources);
  ``fastconv bench`` and ``pytest bench/``.
* ``quick``: fewer and smaller cases, a few minutes on two cores (``--quick``).
* ``smoke``: tiny shapes that exercise every code path in seconds, for CI (``--smoke``).

Shapes are NHWC inputs and HWIO kernels; paddings are explicit and symmetric, so PyTorch computes
exactly the same convolution. ``flops`` is the direct algorithm's count (2 x multiply-adds),
used for every algorithm, so Winograd's figures are effective GFLOP/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastconv.geometry import ConvGeometry, PoolGeometry, conv_geometry, pool_geometry

#: Tags that the report's summary looks for (one workload each, in every mode).
VGG_TARGET = "vgg-3x3-target"  # Winograd F(4x4,3x3) vs PyTorch on the VGG-16 3x3 layer
MAXPOOL_TARGET = "maxpool-target"  # max pool 2x2 on the lesson's first activation


@dataclass(frozen=True)
class ConvLayer:
    """One convolution: input ``n x h x w x c``, ``o`` square ``k x k`` filters."""

    name: str
    source: str
    n: int
    h: int
    w: int
    c: int
    o: int
    k: int
    stride: int = 1
    pad: int = 0
    tags: tuple[str, ...] = ()

    @property
    def geometry(self) -> ConvGeometry:
        return conv_geometry((self.n, self.h, self.w, self.c), (self.k, self.k, self.c, self.o),
                             self.stride, self.pad)

    @property
    def flops(self) -> int:
        return self.geometry.flops

    @property
    def shape_text(self) -> str:
        g = self.geometry
        return (f"{self.n}x{self.h}x{self.w}x{self.c} -> {g.oh}x{g.ow}x{self.o}, "
                f"{self.k}x{self.k} s{self.stride} p{self.pad}")


@dataclass(frozen=True)
class PoolCase:
    """One pooling window over an ``n x h x w x c`` input (valid padding); measured as max and as
    average pooling."""

    name: str
    source: str
    n: int
    h: int
    w: int
    c: int
    pool: int = 2
    stride: int = 2
    tags: tuple[str, ...] = ()

    @property
    def geometry(self) -> PoolGeometry:
        return pool_geometry((self.n, self.h, self.w, self.c), self.pool, self.stride, "valid")

    @property
    def shape_text(self) -> str:
        g = self.geometry
        return (f"{self.n}x{self.h}x{self.w}x{self.c} -> {g.oh}x{g.ow}x{self.c}, "
                f"{self.pool}x{self.pool} s{self.stride}")


@dataclass(frozen=True)
class Timing:
    """How long each benchmark runs: rounds enough to fill ``target_s`` (between ``min_rounds``
    and ``max_rounds``), each round at least ``min_round_s`` long (several calls per round for
    very short operations)."""

    target_s: float
    min_rounds: int
    max_rounds: int
    min_round_s: float


@dataclass(frozen=True)
class Settings:
    mode: str
    conv_layers: tuple[ConvLayer, ...]
    pool_cases: tuple[PoolCase, ...]
    train_batches: tuple[int, ...]
    infer_batches: tuple[int, ...]
    scaling_batches: tuple[int, ...]
    thread_counts: tuple[int, ...]
    thread_layer: ConvLayer
    timing: Timing
    #: backend -> the largest convolution (GFLOP per call) measured on it; slower backends skip
    #: bigger layers with that reason, to keep the run short.
    gflop_budget: dict[str, float] = field(default_factory=dict)
    startup_rounds: int = 3
    cold_startup_rounds: int = 3  # 0: the empty-JIT-cache start-up is skipped
    #: images per ``model.fit`` epoch (and per epoch of the PyTorch loop it is compared with):
    #: a multiple of the batch (32) and at least 3 batches, so that every step has one shape,
    #: which ``auto`` tunes at its third call, within the untimed warm-up epoch
    fit_samples: int = 12_000


def _lesson(n: int, tags=()) -> tuple[ConvLayer, ...]:
    return (
        ConvLayer(f"lesson-conv1-b{n}", "lesson network", n, 28, 28, 1, 32, 3, tags=tags),
        ConvLayer(f"lesson-conv2-b{n}", "lesson network", n, 13, 13, 32, 64, 3),
        ConvLayer(f"lesson-conv3-b{n}", "lesson network", n, 5, 5, 64, 64, 3),
    )


def _vgg_3_2(n: int) -> ConvLayer:
    return ConvLayer(f"vgg16-conv3_2-b{n}", "VGG-16 block 3", n, 56, 56, 256, 256, 3, pad=1,
                     tags=(VGG_TARGET,))


FULL_CONV = (
    *_lesson(32),
    *_lesson(128),
    ConvLayer("lenet5-c1-b128", "LeNet-5 C1", 128, 32, 32, 1, 6, 5),
    ConvLayer("lenet5-c3-b128", "LeNet-5 C3 (all 6 maps)", 128, 14, 14, 6, 16, 5),
    ConvLayer("lenet5-c5-b128", "LeNet-5 C5", 128, 5, 5, 16, 120, 5),
    ConvLayer("alexnet-conv1-b8", "AlexNet conv1 (11x11 stride 4)", 8, 224, 224, 3, 64, 11,
              stride=4, pad=2),
    ConvLayer("alexnet-conv2-b8", "AlexNet conv2 (5x5)", 8, 27, 27, 64, 192, 5, pad=2),
    ConvLayer("vgg16-conv1_2-b1", "VGG-16 block 1", 1, 224, 224, 64, 64, 3, pad=1),
    _vgg_3_2(8),
    ConvLayer("vgg16-conv5_2-b8", "VGG-16 block 5", 8, 14, 14, 512, 512, 3, pad=1),
    ConvLayer("resnet-3x3-b16", "ResNet-18/34 stage 2", 16, 28, 28, 128, 128, 3, pad=1),
    ConvLayer("resnet-1x1-b8", "ResNet-50 bottleneck 1x1", 8, 56, 56, 256, 64, 1),
    ConvLayer("resnet-3x3s2-b16", "ResNet-18 stage 2 entry (stride 2)", 16, 56, 56, 64, 128, 3,
              stride=2, pad=1),
)

QUICK_CONV = (
    *_lesson(32),
    ConvLayer("lenet5-c3-b128", "LeNet-5 C3 (all 6 maps)", 128, 14, 14, 6, 16, 5),
    ConvLayer("alexnet-conv1-b2", "AlexNet conv1 (11x11 stride 4)", 2, 224, 224, 3, 64, 11,
              stride=4, pad=2),
    _vgg_3_2(2),
    ConvLayer("resnet-3x3-b4", "ResNet-18/34 stage 2", 4, 28, 28, 128, 128, 3, pad=1),
    ConvLayer("resnet-1x1-b2", "ResNet-50 bottleneck 1x1", 2, 56, 56, 256, 64, 1),
    ConvLayer("resnet-3x3s2-b4", "ResNet-18 stage 2 entry (stride 2)", 4, 56, 56, 64, 128, 3,
              stride=2, pad=1),
)

SMOKE_CONV = (
    ConvLayer("tiny-3x3-b2", "smoke", 2, 10, 10, 3, 4, 3),
    ConvLayer("tiny-3x3pad-b1", "smoke (VGG-like)", 1, 8, 8, 4, 4, 3, pad=1, tags=(VGG_TARGET,)),
    ConvLayer("tiny-5x5-b2", "smoke (LeNet-like)", 2, 12, 12, 3, 4, 5),
    ConvLayer("tiny-11x11s4-b1", "smoke (AlexNet-like)", 1, 27, 27, 3, 4, 11, stride=4, pad=2),
    ConvLayer("tiny-1x1-b2", "smoke", 2, 6, 6, 8, 4, 1),
    ConvLayer("tiny-3x3s2-b2", "smoke", 2, 9, 9, 4, 4, 3, stride=2, pad=1),
)

FULL_POOL = (
    PoolCase("lesson-pool1-b32", "lesson network", 32, 26, 26, 32, tags=(MAXPOOL_TARGET,)),
    PoolCase("lesson-pool1-b128", "lesson network", 128, 26, 26, 32),
    PoolCase("lesson-pool2-b32", "lesson network", 32, 11, 11, 64),
    PoolCase("alexnet-pool1-b8", "AlexNet (3x3 stride 2)", 8, 55, 55, 64, pool=3, stride=2),
    PoolCase("vgg16-pool2-b8", "VGG-16 block 2", 8, 112, 112, 128),
)

QUICK_POOL = (
    PoolCase("lesson-pool1-b32", "lesson network", 32, 26, 26, 32, tags=(MAXPOOL_TARGET,)),
    PoolCase("lesson-pool2-b32", "lesson network", 32, 11, 11, 64),
    PoolCase("alexnet-pool1-b2", "AlexNet (3x3 stride 2)", 2, 55, 55, 64, pool=3, stride=2),
)

SMOKE_POOL = (
    PoolCase("tiny-pool2-b2", "smoke", 2, 6, 6, 3, tags=(MAXPOOL_TARGET,)),
    PoolCase("tiny-pool3s2-b1", "smoke", 1, 7, 7, 2, pool=3, stride=2),
)

SETTINGS = {
    "full": Settings(
        mode="full", conv_layers=FULL_CONV, pool_cases=FULL_POOL,
        train_batches=(32, 128), infer_batches=(1, 1000),
        scaling_batches=(1, 2, 4, 8, 16, 32, 64, 128, 256), thread_counts=(1, 2),
        thread_layer=ConvLayer("resnet-3x3-b16", "ResNet-18/34 stage 2", 16, 28, 28, 128, 128,
                               3, pad=1),
        timing=Timing(target_s=1.0, min_rounds=5, max_rounds=200, min_round_s=2e-3),
        gflop_budget={"numpy": 4.0}, startup_rounds=3, cold_startup_rounds=3,
        fit_samples=12_000),
    "quick": Settings(
        mode="quick", conv_layers=QUICK_CONV, pool_cases=QUICK_POOL,
        train_batches=(32,), infer_batches=(1, 1000),
        scaling_batches=(1, 4, 16, 64, 256), thread_counts=(1, 2),
        thread_layer=ConvLayer("resnet-3x3-b4", "ResNet-18/34 stage 2", 4, 28, 28, 128, 128, 3,
                               pad=1),
        timing=Timing(target_s=0.25, min_rounds=3, max_rounds=50, min_round_s=2e-3),
        gflop_budget={"numpy": 0.2}, startup_rounds=3, cold_startup_rounds=1,
        fit_samples=3_200),
    "smoke": Settings(
        mode="smoke", conv_layers=SMOKE_CONV, pool_cases=SMOKE_POOL,
        train_batches=(4,), infer_batches=(1, 8),
        scaling_batches=(1, 2), thread_counts=(1, 2),
        thread_layer=ConvLayer("tiny-3x3-b2", "smoke", 2, 10, 10, 3, 4, 3),
        timing=Timing(target_s=0.01, min_rounds=1, max_rounds=3, min_round_s=0.0),
        gflop_budget={}, startup_rounds=1, cold_startup_rounds=0,
        fit_samples=96),
}

#: Images in one MNIST training epoch, for the seconds-per-epoch column.
EPOCH_IMAGES = 60_000


def settings_for(mode: str) -> Settings:
    return SETTINGS[mode]
