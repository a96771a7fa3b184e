"""What annotators did with the pre-labels: kept, adjusted, relabelled, deleted, and what they added.

Pre-labels (the dataset's boxes) are matched one to one to the final objects (the reviewed ground truth)
of the same image and task, the pairs of highest IoU first. A pre-label is `kept` when its final object
has its label at IoU >= 0.9, `adjusted` at 0.5 <= IoU < 0.9 with its label, `relabelled` at IoU >= 0.5
with another label, and `deleted` when no final object overlaps it at IoU >= 0.5; a final object no
pre-label matched was `added`. Texts are `kept` when the final text is the same and `edited` otherwise,
with the character edit distance. The pre-labels that were kept or adjusted were right: their precision
and recall at each score threshold give the `--min-score` that maximises F1. Pure: rows and COCO in.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from pycocotools import mask as mask_utils

KEPT_IOU = 0.9
MATCH_IOU = 0.5
OUTCOMES = ("kept", "adjusted", "relabelled", "deleted")


def match_objects(predicted: list[dict], final: list[dict]) -> tuple[list[tuple[int, int, float]], set[int], set[int]]:
    """One-to-one pairs (predicted index, final index, IoU) at IoU >= 0.5, highest IoU first; and the
    unmatched predicted and final indices. Boxes are [x, y, w, h] under `bbox`."""
    pairs: list[tuple[int, int, float]] = []
    if predicted and final:
        ious = np.asarray(mask_utils.iou([p["bbox"] for p in predicted], [f["bbox"] for f in final],
                                         [0] * len(final))).reshape(len(predicted), len(final))
        order = np.dstack(np.unravel_index(np.argsort(-ious, axis=None), ious.shape))[0]
        used_p, used_f = set(), set()
        for p, f in order:
            if ious[p, f] < MATCH_IOU:
                break
            if p in used_p or f in used_f:
                continue
            used_p.add(int(p))
            used_f.add(int(f))
            pairs.append((int(p), int(f), float(ious[p, f])))
    matched_p = {p for p, _, _ in pairs}
    matched_f = {f for _, f, _ in pairs}
    return pairs, set(range(len(predicted))) - matched_p, set(range(len(final))) - matched_f


def outcome(predicted_label: str, final_label: str, iou: float) -> str:
    if predicted_label != final_label:
        return "relabelled"
    return "kept" if iou >= KEPT_IOU else "adjusted"


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance in characters."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def best_min_score(scored: list[tuple[float, bool]], finals: int) -> dict:
    """Precision and recall of the pre-labels kept at each score threshold (a pre-label is right when it was
    kept or adjusted), and the threshold with the highest F1 (ties: the lowest threshold)."""
    if not scored or not finals:
        return {"min_score": None, "f1": None, "precision": None, "recall": None}
    ordered = sorted(scored, key=lambda item: -item[0])
    best = None
    right = 0
    for k, (score, ok) in enumerate(ordered, start=1):
        right += ok
        if k < len(ordered) and ordered[k][0] == score:
            continue  # a threshold keeps every pre-label of its score
        precision, recall = right / k, right / finals
        f1 = 2 * precision * recall / (precision + recall) if right else 0.0
        if best is None or f1 > best["f1"]:
            best = {"min_score": score, "f1": round(f1, 4), "precision": round(precision, 4),
                    "recall": round(recall, 4), "pre_labels_kept": k}
    return best


def acceptance(rows: list[dict], ground_truth: dict, image_id_of) -> dict:
    """Per task: the counts of each outcome, `added`, per-class breakdowns, texts kept/edited, and the
    F1-best `--min-score`. `image_id_of`: row -> ground-truth image id (None: not reviewed)."""
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    finals_by = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        finals_by[(annotation["image_id"], annotation.get("task"))].append(annotation)
    captions = {c["image_id"]: c["caption"] for c in ground_truth.get("captions", [])}
    report: dict = {}
    scored: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    finals_seen: Counter = Counter()
    for row in rows:
        image_id = image_id_of(row)
        if image_id is None:
            continue
        task = row["task"]
        if row.get("boxes") is not None and task in ("detect", "segment"):
            entry = report.setdefault(task, {**dict.fromkeys(OUTCOMES, 0), "added": 0, "per_class": {}})
            final = finals_by.get((image_id, task)) or finals_by.get((image_id, None), [])
            predicted = [{"bbox": [b["x_min"], b["y_min"], b["x_max"] - b["x_min"], b["y_max"] - b["y_min"]],
                          "label": b["label"], "score": b["score"]} for b in row["boxes"] or []]
            pairs, deleted, added = match_objects(predicted, final)
            finals_seen[task] += len(final)
            for p, f, iou in pairs:
                kind = outcome(predicted[p]["label"], names[final[f]["category_id"]], iou)
                _count(entry, kind, predicted[p]["label"])
                if predicted[p]["score"] is not None:
                    scored[task].append((predicted[p]["score"], kind in ("kept", "adjusted")))
            for p in deleted:
                _count(entry, "deleted", predicted[p]["label"])
                if predicted[p]["score"] is not None:
                    scored[task].append((predicted[p]["score"], False))
            for f in added:
                _count(entry, "added", names[final[f]["category_id"]])
        elif row.get("text") is not None and image_id in captions and task == "caption":
            entry = report.setdefault(task, {"kept": 0, "edited": 0, "edit_distance": 0})
            distance = edit_distance(row["text"], captions[image_id])
            entry["kept" if distance == 0 else "edited"] += 1
            entry["edit_distance"] += distance
    for task, pairs in scored.items():
        report[task]["best_min_score"] = best_min_score(pairs, finals_seen[task])
    return report


def _count(entry: dict, kind: str, label: str) -> None:
    entry[kind] += 1
    per_class = entry["per_class"].setdefault(label, {**dict.fromkeys(OUTCOMES, 0), "added": 0})
    per_class[kind] += 1


def describe_best(entry: dict) -> str:
    """The F1-best `--min-score` of a task's acceptance entry in words; "" when there is none."""
    best = entry.get("best_min_score") or {}
    if best.get("min_score") is None:
        return ""
    return (f"best --min-score {best['min_score']:.3f} (F1 {best['f1']:.3f}, precision {best['precision']:.3f}, "
            f"recall {best['recall']:.3f})")


def describe_texts(entry: dict) -> str:
    return f"texts kept {entry['kept']}, edited {entry['edited']} ({entry['edit_distance']} characters changed)"


def format_acceptance(report: dict) -> list[str]:
    """One line per task (and per class for object tasks)."""
    lines = []
    for task, entry in sorted(report.items()):
        if "edited" in entry:
            lines.append(f"{task:<14} {describe_texts(entry)}")
            continue
        counts = ", ".join(f"{kind} {entry[kind]}" for kind in (*OUTCOMES, "added"))
        best = describe_best(entry)
        lines.append(f"{task:<14} pre-labels {counts}" + (f"; {best}" if best else ""))
        for label, per in sorted(entry["per_class"].items()):
            lines.append(f"  {label:<12} " + ", ".join(f"{kind} {per[kind]}" for kind in (*OUTCOMES, "added")))
    return lines
