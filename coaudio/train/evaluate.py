"""Evaluating a trained classifier on clips: each clip's prediction is the mean probability
over its windows (as in training's validation); accuracy, per-class precision/recall/F1 and
the confusion matrix. The hop-by-hop evaluation is :mod:`coaudio.online.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from coaudio.models.classifier import AudioClassifier
from coaudio.train.config import Recipe
from coaudio.train.data import Clip
from coaudio.train.loop import clip_predictions


@dataclass
class BatchReport:
    accuracy: float
    per_class: list[dict]
    confusion: list[list[int]]  # rows: true label, columns: predicted


def batch_report(model: AudioClassifier, clips: list[Clip], recipe: Recipe, labels: list[str]) -> BatchReport:
    predicted = clip_predictions(model, clips, recipe).argmax(dim=1).tolist()
    truth = [c.label for c in clips]
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(truth, predicted):
        confusion[t][p] += 1
    per_class = []
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted_i = sum(confusion[r][i] for r in range(k))
        support = sum(confusion[i])
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(
            {"label": label, "precision": precision, "recall": recall, "f1": f1, "support": support}
        )
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / max(len(truth), 1)
    return BatchReport(accuracy, per_class, confusion)
