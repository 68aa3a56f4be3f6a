"""Package metadata for visdet.

The ``all`` extra pulls in every optimizer backend and the test tools, so one
``pip install -e ".[all]"`` gives a machine everything the test suite covers.
"""
from setuptools import find_packages, setup

CORE = [
    # torch is capped at the newest release we test with; see README.
    "torch>=2.4,<=2.14.1",
    "torchvision>=0.19,<=0.29.1",
    "mmengine>=0.10.5,<0.11",
    "mmcv-lite>=2.1,<2.3",
    "numpy",
    "pycocotools>=2.0.7",
    "matplotlib",  # curves.png at the end of training (CurvePlotHook)
]

EXTRAS = {
    "bitsandbytes": ["bitsandbytes>=0.45"],
    # 0.19.7 removed OnebitAdam, OnebitLamb and ZeroOneAdam.
    "deepspeed": ["deepspeed>=0.16,<0.19.7"],
    "dadaptation": ["dadaptation>=3.2"],
    # Issue 6's families, one extra per package; the ranges are those tested with torch 2.14.1
    # (none of them pins torch or numpy). Names and their collisions: docs/optimizers.md.
    "transformers": ["transformers>=4.40,<6"],  # only its Adafactor is used
    "lion": ["lion-pytorch>=0.2,<0.3"],
    "prodigy": ["prodigyopt>=1.1,<2"],
    "schedulefree": ["schedulefree>=1.4,<2"],  # optimizer.train()/eval(), see ScheduleFreeHook
    "optimi": ["torch-optimi>=0.3.3,<0.4"],
    "galore": ["galore-torch>=1.0,<2"],
    "apollo": ["apollo-torch>=1.0.3,<2"],
    "pytorch-optimizer": ["pytorch-optimizer>=4.1,<5"],  # the catalogue in sources/pytorch_optimizer.py is 4.1's
    "lomo-optim": ["lomo-optim>=0.1.1,<0.2"],  # HF's optim="lomo"/"adalomo"; imports transformers
    # torch.compile'd low-bit Adam/AdamW state; 0.18 is the release tested with torch 2.14.1 (it pins no torch).
    "torchao": ["torchao>=0.18,<0.19"],
    "heavyball": ["heavyball>=3.2,<3.3"],  # compile-first SOAP/PSGD/Muon...; torch>=2.2,<3 and opt-einsum
    # timm.optim (NAdamW, RMSpropTF, Kron, Muon/AdaMuon, caution variants...); pulls huggingface_hub and
    # safetensors, used by visdet for nothing that reaches the network. grokadamw: HF's optim="grokadamw".
    "timm": ["timm>=1.0.31,<1.1"],  # sources/timm.py and its aliases are 1.0.31's
    "grokadamw": ["grokadamw>=0.1.2,<0.2"],
    # tools/train.py adds mmengine's TensorboardVisBackend when tensorboard is importable.
    "tensorboard": ["tensorboard>=2.14"],
    # tools/tune.py: Optuna studies in SQLite (nothing to install) or PostgreSQL through psycopg2 (several machines).
    # 4.9 named the heartbeat's retry RetryHeartbeatStaleTrialCallback. optuna-dashboard reads the study database
    # but is optional: pip install optuna-dashboard.
    "tune": ["optuna>=4.9,<6", "psycopg2-binary>=2.9"],
    # faster-coco-eval: only for tests/evaluation/test_coco_eval_speed.py and benchmarks/coco_eval_speed.py, which
    # show why CocoMetric keeps pycocotools (its precision lacks pycocotools' epsilon: not bit-identical).
    "tests": ["pytest>=7", "hypothesis>=6", "import-linter>=2.1,<3", "ruff>=0.6", "faster-coco-eval>=1.6,<2"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="visdet",
    version="0.1.0",
    description="MMEngine-style object detection toolkit built around a pluggable optimizer subsystem",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["visdet", "visdet.*"]),
    install_requires=CORE,
    extras_require=EXTRAS,
)
