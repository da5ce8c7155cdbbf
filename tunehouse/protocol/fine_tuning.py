"""Fine-tuning: https://platform.openai.com/docs/api-reference/fine-tuning
(spec schemas `CreateFineTuningJobRequest`, `FineTuningJob`, `FineTuningJobEvent`, `FineTuningJobCheckpoint`)."""

from __future__ import annotations

import re
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .common import ListObject

Auto = Literal["auto"]
NEpochs = Union[Auto, int]
BatchSize = Union[Auto, int]
LearningRateMultiplier = Union[Auto, float]
SUFFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]*$")


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: BatchSize = "auto"
    learning_rate_multiplier: LearningRateMultiplier = "auto"
    n_epochs: NEpochs = "auto"
    # --- tunehouse extensions ---
    training: Literal["lora", "full"] = "lora"
    """`full` trains every weight instead of a LoRA adapter (slower, and each checkpoint is a whole model)."""

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value):
        if value != "auto" and not 1 <= value <= 256:
            raise ValueError("must be 'auto' or an integer from 1 to 256")
        return value

    @field_validator("n_epochs")
    @classmethod
    def _n_epochs(cls, value):
        if value != "auto" and not 1 <= value <= 50:
            raise ValueError("must be 'auto' or an integer from 1 to 50")
        return value

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _learning_rate_multiplier(cls, value):
        if value != "auto" and not 0 < value <= 10:
            raise ValueError("must be 'auto' or a number greater than 0 and at most 10")
        return value


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None


class WandbIntegration(BaseModel):
    project: str
    entity: str | None = None
    name: str | None = None
    tags: list[str] | None = None


class Integration(BaseModel):
    type: Literal["wandb"]
    wandb: WandbIntegration


class CreateFineTuningJobRequest(BaseModel):
    """Unknown top-level fields are refused (400 naming them), as OpenAI does."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    hyperparameters: Hyperparameters | None = None
    suffix: str | None = Field(default=None, max_length=64)
    validation_file: str | None = None
    integrations: list[Integration] | None = None
    seed: int | None = Field(default=None, ge=0, le=2_147_483_647)
    method: Method | None = None
    metadata: dict[str, str] | None = None

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, value):
        if value is not None and not SUFFIX_PATTERN.match(value):
            raise ValueError("may contain only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value):
        if value is None:
            return value
        if len(value) > 16:
            raise ValueError("at most 16 key-value pairs")
        for key, item in value.items():
            if len(key) > 64 or len(item) > 512:
                raise ValueError("keys are at most 64 characters and values at most 512")
        return value

    @model_validator(mode="after")
    def _method_supported(self):
        if self.method is not None and self.method.type != "supervised":
            raise ValueError(
                f"method type {self.method.type!r} is not supported yet; use 'supervised'"
            )
        return self

    def requested_hyperparameters(self) -> Hyperparameters:
        """`method.supervised.hyperparameters` wins over the deprecated top-level `hyperparameters`."""
        if self.method and self.method.supervised and self.method.supervised.hyperparameters:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: str
    """validating_files, queued, running, succeeded, failed, cancelled; and `paused` (see docs)."""
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    integrations: list[Integration] | None = None
    metadata: dict[str, str] | None = None
    method: dict
    user_provided_suffix: str | None = None


class FineTuningJobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict | None = None
    type: Literal["message", "metrics"] = "message"


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


JobList = ListObject[FineTuningJob]
EventList = ListObject[FineTuningJobEvent]
CheckpointList = ListObject[FineTuningJobCheckpoint]
