"""The toolkit's GLUE metric as a Hugging Face `evaluate` module: it loads from the installed
package, offline (`evaluate.load(<this directory>, task)`), and gives what
`evaluate.load("glue", task)` gives online (the same metric names and definitions: CoLA
Matthews correlation, MRPC/QQP F1 and accuracy, STS-B Pearson and Spearman, accuracy
elsewhere). Configurations: the GLUE task names, plus `classification` and `regression`
for a user's own task (accuracy, macro-F1, MCC; Pearson, Spearman)."""

import datasets
import evaluate

from sparse_transfer.glue.metrics import METRICS, metric_names

_DESCRIPTION = "GLUE metrics computed with scikit-learn and SciPy, offline."
_INPUTS = "predictions: predicted class ids (or floats for STS-B / regression); references: the labels."


class GlueMetric(evaluate.Metric):
    def _info(self):
        kind = "float32" if self.config_name in ("stsb", "regression") else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)}),
        )

    def _compute(self, predictions, references):
        return {name: float(METRICS[name](predictions, references)) for name in metric_names(self.config_name)}
