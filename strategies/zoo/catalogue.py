"""Every strategy Avalanche 0.6.0 ships, as data: the one place a new Avalanche strategy is added.

One `Method` line per harness name says which Avalanche class or plugin it runs (`target`), the
settings and role, which option is the rehearsal buffer, the defaults the harness changes (with the
reason) and the arguments it fills from the run instead of exposing them. The option dataclasses are
generated from the targets' signatures by `python -m strategies.zoo.generate` (into `options.py`), so
`hywu-bench list` reads them without importing Avalanche; a test fails when they are stale.

Arguments a method takes that are not plain values (models, callables, criteria, storage policies)
are never options: they are either filled from the run (a value starting with "@", see
`strategies/zoo/build.py`: "@model", "@features", "@feature_dim", "@n_classes", "@input_shape",
"@batch_size") or left at Avalanche's default, and `list` names them under "not exposed".

`RUN_BY` names, for every Avalanche strategy and method plugin, the harness name that runs it (the classic
baselines in `strategies/baselines` run eight of them), and
`NOT_STRATEGIES` the exported templates and plugins that are no continual-learning method by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

AVALANCHE_VERSION = "0.6.0"
ALL = ("class", "domain", "task")
CLASS_TASK = ("class", "task")


@dataclass(frozen=True)
class Method:
    name: str
    target: str  # "module:Class" of an Avalanche strategy (a template subclass) or plugin
    help: str
    settings: tuple[str, ...] = ALL
    role: str = "method"  # "reference" (never ranked), "oracle" (the task label picks parameters)
    buffer: str | None = None  # the option that sizes the rehearsal buffer (raw inputs kept)
    buffer_per: str = "total"  # "total" or "experience" (GEM keeps that many per experience)
    # How a memory budget sizes the buffer: bytes an item keeps beside its input and label (4: the float32
    # weight of Avalanche's reservoir buffers), or a sizer "module:function" for other items; None: the
    # method runs unsized under a budget (its fixed costs, an old model, are not modelled) and is marked.
    item_extra: int | None = None
    sizer: str | None = None
    memory_kinds: Mapping[str, str | None] = field(default_factory=dict)  # fields' memory kinds; None: scratch
    defaults: Mapping[str, Any] = field(default_factory=dict)  # harness-changed or required defaults
    why: str = ""  # why the harness changes those defaults (shown in the generated options' docstring)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # set by the harness, not options ("@..." from the run)
    types: Mapping[str, str] = field(default_factory=dict)  # option types where Avalanche's signature has none
    model: str | None = None  # how the backbone is adapted for the method (strategies/zoo/models.py)
    relearn_first: bool = False  # trains experience 0 for its epochs even after the shared warm start (its
    #                              memory fills in training iterations, or it fails on an experience of 0 epochs)
    loader: str = "tensors"  # "avalanche": the method swaps in Avalanche's replay loader
    resume: str | None = None  # what the checkpoint cannot save (refused); None: resumes exactly (tested)
    not_state: tuple[str, ...] = ()  # fields the method rebuilds itself (a loader made at every experience)
    unavailable: str | None = None  # why it cannot run here (listed, refused with this line)
    conditions: bool = True  # takes streams whose minibatches carry condition tokens
    no_bf16: str | None = None  # why `precision=bf16` cannot be honoured (refused with this line); None: it is
    paper: str = ""


_BATCH_MEM = ("The replay minibatch is as large as the incoming one (None: the run's batch size), as in "
              "the paper and as `replay`'s buffer batches; Avalanche's default is 10")
_NO_CONDITIONS = False  # a template that reads minibatch columns by position (x, y, t): no condition tokens
_LOGITS = "strategies.zoo.sizing:with_logits"  # an item keeps its logits too (DER)
_DER_BUFFER = "DER's buffer (Avalanche keeps the stored logits as a dataset attribute)"

METHODS: tuple[Method, ...] = (
    # Rehearsal: a buffer of raw inputs (mem_size 200 by default, as `replay`).
    Method("der", "avalanche.training:DER", "DER: replay with logit distillation on a buffer (beta = 0)",
           buffer="mem_size", item_extra=4, sizer=_LOGITS, fixed={"beta": 0.0}, conditions=_NO_CONDITIONS,
           resume=_DER_BUFFER,
           paper="Buzzega et al. 2020"),
    Method("derpp", "avalanche.training:DER", "DER++: DER plus cross-entropy on the buffer's labels",
           buffer="mem_size", item_extra=4, sizer=_LOGITS, conditions=_NO_CONDITIONS, resume=_DER_BUFFER,
           paper="Buzzega et al. 2020"),
    Method("er-ace", "avalanche.training:ER_ACE", "ER-ACE: replay with the asymmetric cross-entropy (incoming "
           "batch: its own classes only)", buffer="mem_size", item_extra=4, defaults={"batch_size_mem": None},
           why=_BATCH_MEM,
           conditions=_NO_CONDITIONS, paper="Caccia et al. 2022"),
    Method("er-aml", "avalanche.training:ER_AML", "ER-AML: replay with a supervised-contrastive metric loss on "
           "the incoming batch", buffer="mem_size", item_extra=4, defaults={"batch_size_mem": None}, why=_BATCH_MEM,
           resume="ER_AML's per-class replay loaders (generators; a resume that skipped them was not exact)",
           fixed={"feature_extractor": "@features"}, conditions=_NO_CONDITIONS, paper="Caccia et al. 2022"),
    Method("icarl", "avalanche.training:ICaRL", "iCaRL: herding exemplars, distillation and a nearest-mean-of-"
           "exemplars classifier", settings=CLASS_TASK, buffer="memory_size", relearn_first=True,
           defaults={"memory_size": 200, "fixed_memory": True},
           why="Avalanche requires memory_size and fixed_memory; 200 as `replay`, and a fixed total memory as "
               "the paper's K", fixed={"buffer_transform": None}, model="icarl",
           memory_kinds={"x_memory": "raw_inputs"},  # its exemplars (beside the old model and class means)
           conditions=_NO_CONDITIONS,
           paper="Rebuffi et al. 2017"),
    Method("gdumb", "avalanche.training.plugins:GDumbPlugin", "GDumb: retrain from the start on a class-balanced "
           "greedy buffer only", buffer="mem_size", paper="Prabhu et al. 2020"),
    Method("gem", "avalanche.training.plugins:GEMPlugin", "GEM: project the gradient so no stored experience's "
           "loss increases", buffer="patterns_per_experience", buffer_per="experience", item_extra=0,
           defaults={"patterns_per_experience": 50, "memory_strength": 0.5},
           why="Avalanche requires both; 50 per experience as `agem`, and GEM's strategy default 0.5",
           paper="Lopez-Paz & Ranzato 2017"),
    Method("gss", "avalanche.training.plugins:GSS_greedyPlugin", "GSS-greedy: keep a buffer of gradient-diverse "
           "samples", buffer="mem_size", item_extra=4, fixed={"input_size": "@input_shape"},
           paper="Aljundi et al. 2019b",
           no_bf16="its per-sample gradient passes run in float32 beside the autocast forward"),
    Method("mir", "avalanche.training.plugins:MIRPlugin", "MIR: replay the stored samples a virtual update would "
           "interfere with most", buffer="mem_size", item_extra=4, defaults={"batch_size_mem": 10}, relearn_first=True,
           resume="MIR's replay loader, made at the end of an experience (a generator)",
           why="Avalanche requires batch_size_mem; 10 as its examples", paper="Aljundi et al. 2019a"),
    Method("bic", "avalanche.training.plugins:BiCPlugin", "BiC: replay plus a bias-correction layer fitted on a "
           "held-out part of the buffer", settings=("class",), buffer="mem_size", defaults={"mem_size": 200},
           unavailable="Avalanche 0.6.0's BiCPlugin passes `verbose` to torch's MultiStepLR, which the installed "
                       "torch (>= 2.7) no longer accepts",
           why="200 as `replay` and as Avalanche's BiC strategy (the plugin's default is 2000)", loader="avalanche",
           paper="Wu et al. 2019"),
    Method("rar", "avalanche.training.plugins:RARPlugin", "RAR: repeated augmented rehearsal (adversarial "
           "augmentation of replayed samples)", buffer="mem_size", item_extra=4, defaults={"batch_size_mem": 10},
           why="Avalanche requires batch_size_mem; 10 as its examples", loader="avalanche", paper="Zhang et al. 2022",
           memory_kinds={"replay_loader": None, "iter_replay": None},  # loaders over the buffer, not more memory
           resume="RAR's replay iterator, which runs on from one experience into the next"),
    Method("scr", "avalanche.training:SCR", "SCR: supervised-contrastive replay with a nearest-class-mean "
           "classifier", settings=("class",), buffer="mem_size", item_extra=4, defaults={"mem_size": 200},
           why="200 as `replay` (Avalanche's default is 100)", model="scr", loader="avalanche",
           not_state=("augmentations",),
           conditions=_NO_CONDITIONS, paper="Mai et al. 2021"),
    Method("mer", "avalanche.training:MER", "MER: meta-experience replay (Reptile over replayed batches)",
           buffer="mem_size", item_extra=4, memory_kinds={"w_bef": None},  # Reptile's weights before a batch
           relearn_first=True, conditions=_NO_CONDITIONS, paper="Riemer et al. 2019",
           no_bf16="its Reptile loop runs its own forward passes outside the template's forward"),
    Method("lamaml", "avalanche.training.supervised.lamaml_v2:LaMAML", "La-MAML: look-ahead meta-learning with "
           "learnt per-parameter learning rates (Avalanche's torch.func version; the `higher` one is not "
           "installed)", buffer="max_buffer_size", model="base-model", relearn_first=True,
           resume="LaMAML's second optimizer (of its learnt learning rates)", conditions=_NO_CONDITIONS,
           paper="Gupta et al. 2020",
           no_bf16="its meta-update runs its own forward passes outside the template's forward"),
    Method("feature-replay", "avalanche.training:FeatureReplay", "feature replay: a buffer of penultimate "
           "features trains the head", buffer="mem_size", defaults={"batch_size_mem": None}, why=_BATCH_MEM,
           fixed={"last_layer_name": "head"}, conditions=_NO_CONDITIONS, paper="Avalanche",
           resume="its replay loader of stored features, made at the end of an experience (a generator)",
           no_bf16="its feature buffer keeps float32 features that meet bf16 activations in the head"),
    Method("cope", "avalanche.training.plugins:CoPEPlugin", "CoPE: continual prototype evolution (the backbone's "
           "outputs are the prototype space)", settings=("class",), buffer="mem_size",
           fixed={"n_classes": "@n_classes", "p_size": "@n_classes"}, relearn_first=True,
           resume="the model, which CoPE extends while it trains",
           paper="De Lange & Tuytelaars 2021"),
    Method("generative-replay", "avalanche.training:GenerativeReplay", "deep generative replay: a VAE "
           "(Avalanche's MlpVAE for the input shape) generates old inputs, labelled by the previous model",
           model="generative-replay", resume="the generator's own strategy (VAETraining) and optimizer",
           conditions=_NO_CONDITIONS, paper="Shin et al. 2017"),
    # Regularisation and distillation.
    Method("mas", "avalanche.training.plugins:MASPlugin", "MAS: memory-aware synapses (output-sensitivity "
           "importances)", paper="Aljundi et al. 2018"),
    Method("rwalk", "avalanche.training.plugins:RWalkPlugin", "RWalk: Riemannian walk (online Fisher plus "
           "path-integral importances)", relearn_first=True, defaults={"delta_t": None},
           why="delta_t None = 10 (Avalanche's default), or the training iterations of the shortest experience if "
               "fewer: RWalk's scores update every delta_t iterations and its loss turns NaN with no update",
           paper="Chaudhry et al. 2018"),
    Method("lfl", "avalanche.training.plugins:LFLPlugin", "LFL: less-forgetting learning (keep the penultimate "
           "features of the previous model)", defaults={"lambda_e": 0.0001},
           why="Avalanche requires lambda_e; 1e-4 as its tests", model="base-model", paper="Jung et al. 2016"),
    Method("feature-distillation", "avalanche.training.plugins:FeatureDistillationPlugin", "feature distillation: "
           "cosine distance to the previous model's penultimate features", types={"alpha": "float"},
           fixed={"mode": "cosine"}, why="Mode is fixed to cosine: Avalanche 0.6.0's mse mode passes `dim` to "
           "F.mse_loss and fails",
           model="stores-features", paper="Avalanche"),
    Method("cwr-star", "avalanche.training.plugins:CWRStarPlugin", "CWR*: copy-weight-with-reinit of the head; "
           "the rest of the model frozen after the first experience", relearn_first=True, fixed={"model": "@model",
           "cwr_layer_name": "head", "freeze_remaining_model": True}, paper="Lomonaco et al. 2020"),
    Method("slda", "avalanche.training:StreamingLDA", "deep streaming LDA on the warm-started backbone's frozen "
           "features", settings=CLASS_TASK, fixed={"slda_model": "@features", "input_size": "@feature_dim",
           "num_classes": "@n_classes", "output_layer_name": None, "optimizer": "@drop", "model": "@drop"},
           relearn_first=True,
           conditions=_NO_CONDITIONS,
           paper="Hayes & Kanan 2020"),
    # Task-incremental: the task label picks parameters at test time.
    Method("pnn", "avalanche.training:PNNStrategy", "ORACLE: progressive neural networks, a column per task "
           "chosen by the task label (task-incremental only)", settings=("task",), role="oracle", model="pnn",
           resume="the columns PNN adds for every task (its model grows)",
           relearn_first=True, conditions=_NO_CONDITIONS, paper="Rusu et al. 2016",
           no_bf16="its columns write float32 buffers in place from bf16 activations"),
    Method("packnet", "avalanche.training:PackNet", "ORACLE: PackNet, a pruned weight mask per task chosen by the "
           "task label (task-incremental only)", settings=("task",), role="oracle", model="packnet",
           defaults={"post_prune_epochs": None, "prune_proportion": 0.5},
           why="Avalanche requires both: post_prune_epochs None = half the run's epochs (rounded down, at least 1), "
               "prune_proportion 0.5 as its tests", relearn_first=True, conditions=_NO_CONDITIONS,
           paper="Mallya & Lazebnik 2018"),
    # References.
    Method("from-scratch", "avalanche.training.plugins:FromScratchTrainingPlugin", "re-initialise the model at "
           "every experience and train on that experience only (a reference)", role="reference",
           relearn_first=True, paper="Avalanche"),
    # Cannot run here.
    Method("l2p", "avalanche.training:LearningToPrompt", "learning to prompt (Wang et al. 2022)",
           defaults={"model_name": "vit_base_patch16_224"}, why="Avalanche requires model_name; its examples' ViT",
           unavailable="needs timm and an ImageNet-pretrained ViT (downloaded) on 224x224 RGB inputs"),
    Method("ar1", "avalanche.training:AR1", "AR1* with latent replay (Pellegrini et al. 2020)",
           unavailable="needs pytorchcv's ImageNet-pretrained MobileNetV1 weights (downloaded) on 128x128 RGB inputs"),
    Method("expert-gate", "avalanche.training:ExpertGateStrategy", "Expert Gate (Aljundi et al. 2017)",
           unavailable="needs an ImageNet-pretrained AlexNet (downloaded) on 224x224 RGB inputs"),
)

# Every Avalanche strategy and method plugin, by the harness name that runs it (the classic baselines too).
RUN_BY = {
    "Naive": "naive", "OnlineNaive": "naive", "JointTraining": "joint", "Cumulative": "cumulative",
    "Replay": "replay", "EWC": "ewc", "SynapticIntelligence": "si", "LwF": "lwf", "AGEM": "agem",
    "DER": "der", "ER_ACE": "er-ace", "ER_AML": "er-aml", "ICaRL": "icarl", "GDumb": "gdumb", "GEM": "gem",
    "GSS_greedy": "gss", "MIR": "mir", "BiC": "bic", "SCR": "scr", "MER": "mer", "FeatureReplay": "feature-replay",
    "CoPE": "cope", "GenerativeReplay": "generative-replay", "MAS": "mas", "LFL": "lfl", "CWRStar": "cwr-star",
    "StreamingLDA": "slda", "PNNStrategy": "pnn", "PackNet": "packnet", "FromScratchTraining": "from-scratch",
    "LearningToPrompt": "l2p", "AR1": "ar1", "ExpertGateStrategy": "expert-gate",
    "LaMAML": "lamaml",  # avalanche.training.supervised.lamaml_v2 (lamaml.py, which needs `higher`, too)
    # plugins
    "EWCPlugin": "ewc", "SynapticIntelligencePlugin": "si", "LwFPlugin": "lwf", "AGEMPlugin": "agem",
    "ReplayPlugin": "replay", "GDumbPlugin": "gdumb", "GEMPlugin": "gem", "GSS_greedyPlugin": "gss",
    "MIRPlugin": "mir", "BiCPlugin": "bic", "RARPlugin": "rar", "CoPEPlugin": "cope", "MASPlugin": "mas",
    "RWalkPlugin": "rwalk", "LFLPlugin": "lfl", "FeatureDistillationPlugin": "feature-distillation",
    "CWRStarPlugin": "cwr-star", "FromScratchTrainingPlugin": "from-scratch",
    "GenerativeReplayPlugin": "generative-replay", "TrainGeneratorAfterExpPlugin": "generative-replay",
}

# Exported templates and plugins that are no continual-learning method by themselves.
NOT_STRATEGIES = {
    "AETraining": "the autoencoder template Expert Gate trains its gates with",
    "VAETraining": "the VAE template generative-replay trains its generator with",
    "EvaluationPlugin": "Avalanche's metrics and loggers (see --logger)",
    "SupervisedPlugin": "the base class of plugins",
    "EarlyStoppingPlugin": "a training utility (needs a validation stream)",
    "LRSchedulerPlugin": "a training utility (a learning-rate schedule)",
    "CurrentDataNCMUpdate": "class-mean updates for a nearest-class-mean classifier model",
    "MemoryNCMUpdate": "class-mean updates for a nearest-class-mean classifier model",
    "NCMOracle": "class-mean updates for a nearest-class-mean classifier model",
    "CurrentDataFeCAMUpdate": "class-statistics updates for a FeCAM classifier model",
    "MemoryFeCAMUpdate": "class-statistics updates for a FeCAM classifier model",
    "FeCAMOracle": "class-statistics updates for a FeCAM classifier model",
}

# Never options, whatever their type: Avalanche's logging and loader plumbing.
PLUMBING = ("verbose", "num_workers", "storage_policy", "batch_size", "base_kwargs", "kwargs")


def avalanche_note(name: str) -> tuple[str]:
    """The line `hywu-bench list` prints under harness strategy `name`: the Avalanche classes it runs."""
    return (f"Avalanche: {', '.join(sorted(c for c, runner in RUN_BY.items() if runner == name))}",)


def method(name: str) -> Method:
    for m in METHODS:
        if m.name == name:
            return m
    raise KeyError(name)
