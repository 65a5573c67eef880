"""The best model of a fit, logged to MLflow as a pyfunc "model from code".

The classifier is saved as :meth:`autotransfer.model.Classifier.save` writes it
(safetensors weights and a JSON description) beside ``pyfunc_model.py``, which MLflow
runs when the model is loaded: nothing is pickled. The logged model hangs off the parent
run, with the best trial's hyperparameters as its params.

>>> model_id = create_logged_model(client, state, result)          # doctest: +SKIP
>>> log_model_files(client, state, result, model_id)              # doctest: +SKIP
>>> state["model_uri"]                                            # doctest: +SKIP
'models:/m-8e1d...'
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.tracking.mlflow_client import MAX_PARAM_VALUE, TAG_TRIAL, flatten, truncate

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from autotransfer.results import FitResult

logger = logging.getLogger(__name__)

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_NAME = "best_model"
# What the logged pyfunc model needs at load time (its pip requirements).
MODEL_REQUIREMENTS = ("autotransfer", "mlflow", "torch", "timm", "safetensors", "pillow")


def create_logged_model(client: MlflowClient, state: dict[str, Any], result: FitResult) -> str:
    best = result.best
    model = client.create_logged_model(
        state["experiment_id"],
        name=MODEL_NAME,
        source_run_id=state["parent_run_id"],
        params={k: truncate(str(v), MAX_PARAM_VALUE) for k, v in flatten(best.params).items()},
        tags={
            TAG_TRIAL: str(best.number),
            "autotransfer.backbone": best.backbone,
            "autotransfer.strategy": best.strategy,
        },
        model_type="autotransfer-classifier",
    )
    return model.model_id


def log_model_files(
    client: MlflowClient, state: dict[str, Any], result: FitResult, model_id: str
) -> None:
    """The best model as a pyfunc "model from code": the classifier's safetensors and JSON
    plus ``pyfunc_model.py``; nothing is pickled."""
    import mlflow
    import pandas as pd
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    parent_id = state["parent_run_id"]
    try:
        logged = client.get_logged_model(model_id)
        signature = ModelSignature(
            inputs=Schema([ColSpec("string")]),
            outputs=Schema([ColSpec("string")]),
            params=ParamSchema([ParamSpec("proba", "boolean", False)]),
        )
        meta = Model(
            artifact_path=logged.artifact_location,
            model_uuid=model_id,
            run_id=parent_id,
            model_id=model_id,
        )
        with tempfile.TemporaryDirectory(prefix="autotransfer-mlflow-") as tmp, _quiet():
            saved = Path(result.save(Path(tmp) / "classifier"))
            local = Path(tmp) / "mlflow_model"
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=str(PYFUNC_CODE),
                artifacts={"model": str(saved)},
                signature=signature,
                input_example=pd.DataFrame({"path": ["images/example.jpg"]}),
                pip_requirements=_requirements(),
                mlflow_model=meta,
                metadata={"classes": list(result.classes), "backbone": result.best.backbone},
            )
            client.log_model_artifacts(model_id, str(local))
        client.finalize_logged_model(model_id, "READY")
        client.log_outputs(parent_id, [LoggedModelOutput(model_id, step=0)])
    except BaseException:
        try:
            client.finalize_logged_model(model_id, "FAILED")
        except Exception:  # keep the first error
            logger.debug("MLflow: could not mark model %s failed", model_id, exc_info=True)
        raise
    state["model_id"] = model_id
    state["model_uri"] = f"models:/{model_id}"
    state["model_artifact_uri"] = logged.artifact_location
    client.set_tag(parent_id, "autotransfer.model_uri", state["model_uri"])
    logger.info("MLflow: best model logged as %s", state["model_uri"])


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in MODEL_REQUIREMENTS:
        try:
            out.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            out.append(dist)
    return out


@contextmanager
def _quiet() -> Iterator[None]:
    """No artifact progress bars on stderr while we copy model files (library code does
    not print); a user's own setting of the variable wins."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)
