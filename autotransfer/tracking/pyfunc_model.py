"""The MLflow pyfunc face of a fitted classifier, logged as "models from code".

MLflow stores this file (not a pickle) beside the classifier saved by
:meth:`autotransfer.model.Classifier.save` (safetensors weights and a JSON description)
and runs it when the model is loaded, so loading executes only this reviewed code and
the ``autotransfer`` package. :class:`autotransfer.tracking.mlflow_tracker.MLflowTracker`
logs it at the end of a fit.

>>> import mlflow                                                # doctest: +SKIP
>>> model = mlflow.pyfunc.load_model(result.tracking["model_uri"])   # doctest: +SKIP
>>> model.predict(pd.DataFrame({"path": ["new/cat.jpg"]}))       # doctest: +SKIP
['cat']
>>> model.predict(["new/cat.jpg"], params={"proba": True})       # doctest: +SKIP
    cat   dog   owl
0  0.91  0.05  0.04
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
import pandas as pd

PATH_COLUMN = "path"


def paths_of(model_input: Any) -> list[str]:
    """The image paths in a pyfunc input: a DataFrame with a ``path`` column (or a single
    column), a Series, a list or array of paths, or one path.

    >>> paths_of(["a.jpg", "b.png"])
    ['a.jpg', 'b.png']
    """
    if isinstance(model_input, pd.DataFrame):
        if PATH_COLUMN in model_input.columns:
            column = model_input[PATH_COLUMN]
        elif len(model_input.columns) == 1:
            column = model_input.iloc[:, 0]
        else:
            raise ValueError(
                f"Expected a DataFrame with a {PATH_COLUMN!r} column of image paths; got the "
                f"columns {list(model_input.columns)}. Rename the column holding the paths "
                f"to {PATH_COLUMN!r}."
            )
        return [str(p) for p in column.tolist()]
    if isinstance(model_input, pd.Series):
        return [str(p) for p in model_input.tolist()]
    if isinstance(model_input, (str, bytes)) or hasattr(model_input, "__fspath__"):
        return [str(model_input)]
    if isinstance(model_input, Mapping) and PATH_COLUMN in model_input:
        return paths_of(list(model_input[PATH_COLUMN]))
    try:
        return [str(p) for p in list(model_input)]
    except TypeError:
        raise ValueError(
            f"Expected image paths (a DataFrame with a {PATH_COLUMN!r} column, a Series or "
            f"a list of paths); got {type(model_input).__name__}."
        ) from None


class AutotransferClassifier(mlflow.pyfunc.PythonModel):
    """Predicts class names (or, with ``params={"proba": True}``, class probabilities)
    for image files, with the classifier saved in the artifact ``model``."""

    def load_context(self, context: Any) -> None:
        try:
            # MLflow loads this file where autotransfer may be missing: say what to install
            from autotransfer.model import Classifier
        except ImportError as exc:
            raise ImportError(
                "This MLflow model needs the autotransfer package: install the version named "
                "in the model's requirements.txt (pip install autotransfer), then load it again."
            ) from exc

        self.classifier = Classifier.load(context.artifacts["model"])

    # The logged signature (one string column, a boolean ``proba`` param) makes MLflow hand
    # over a DataFrame whatever the caller passed; a DataFrame hint keeps MLflow's own
    # type-hint validation out of the way.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[str] | pd.DataFrame:
        paths = paths_of(model_input)
        if params and params.get("proba"):
            import numpy as np

            proba = np.asarray(self.classifier.predict_proba(paths))
            return pd.DataFrame(proba, columns=list(self.classifier.classes))
        return list(self.classifier.predict(paths))


mlflow.models.set_model(AutotransferClassifier())
