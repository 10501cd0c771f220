"""bdbench core: interfaces, registry, data, models, decomposition, training, metrics, cache, store, runner.

Plugins import what they need from here::

    from bench_core import hookimpl, Attack, InferenceDefense, Detector, Probe
"""

__version__ = "0.1.0"

from bench_core.data.images import ImageColumn, Images, OverlayImages, map_images  # noqa: E402
from bench_core.hookspecs import hookimpl  # noqa: E402
from bench_core.interfaces import (  # noqa: E402
    AdaptiveAttack, Attack, AttackConfig, AttackInfo, Defense, Detector, InferenceDefense, PairSet, Plugin, PluginConfig,
    PoisonResult, PostTrainDefense, Probe, ProbeData, ProbeResult, RunContext, ThreatModel, TrainDefense,
    TargetInfo, TrainingPlan,
)
from bench_core.numerics import Precision, autocast_numerics  # noqa: E402
from bench_core.zeroshot import Classifier, ZeroShotClassifier  # noqa: E402

__all__ = [
    "__version__", "hookimpl", "AdaptiveAttack", "TargetInfo", "Attack", "AttackConfig", "AttackInfo", "Defense", "Detector", "InferenceDefense",
    "PairSet", "Plugin", "PluginConfig", "PoisonResult", "PostTrainDefense", "Probe", "ProbeData", "ProbeResult",
    "RunContext", "ThreatModel", "TrainDefense", "TrainingPlan", "Classifier", "ZeroShotClassifier",
    "Precision", "autocast_numerics", "ImageColumn", "Images", "OverlayImages", "map_images",
]
