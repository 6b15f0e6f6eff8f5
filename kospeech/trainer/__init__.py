"""Training: the supervised CTC trainer, the per-user adapter trainer, their configs and jobs."""

from kospeech.evaluation import EvaluationResult, evaluate
from kospeech.trainer.adapter_trainer import AdapterTrainer, split_holdout
from kospeech.trainer.configs import AdapterTrainConfig, DataConfig, TrainConfig
from kospeech.trainer.criterion import CTCLoss
from kospeech.trainer.multi_user import MultiUserAdapterTrainer, train_user_adapters
from kospeech.trainer.supervised_trainer import SupervisedTrainer, TrainerState

__all__ = [
    "SupervisedTrainer",
    "AdapterTrainer",
    "AdapterTrainConfig",
    "TrainConfig",
    "DataConfig",
    "TrainerState",
    "CTCLoss",
    "EvaluationResult",
    "evaluate",
    "split_holdout",
    "MultiUserAdapterTrainer",
    "train_user_adapters",
]
