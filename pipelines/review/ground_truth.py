"""Ground truth as `jobs/evaluate.py` scores it: COCO from any tool, or Label Studio's JSON export.

Label Studio's JSON export (a list of tasks, each with its annotators' `annotations`) keeps what its
COCO export drops: brush masks and text areas. Each task's latest annotation that was not cancelled
is read back into COCO, by the control names this project's export writes
(`pipelines.review.export.labelstudio`): `detect` rectangles are `detect` objects, `segment` brushes
and `segment_box` rectangles are `segment` objects (a brush's box is the mask's tight box), and text
areas whose name starts with `caption` are captions. Each annotation says its `task`, so each task is
scored against its own objects. Images keep the task's `image_id` (the export writes it into
`data`), joined on first, and are named by its `source_uri`, else its image URL, joined on next, as any
ground truth is (`ImageIndex`).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from pipelines.review.export.brush import brush_rle_to_mask
from pipelines.review.export.labelstudio import BOXES, BRUSHES, IMAGE

# Label Studio control -> the task its objects belong to.
TASK_OF_RECTANGLES = {control: task for task, control in BOXES.items()}
TASK_OF_BRUSHES = {BRUSHES: "segment"}


def read_ground_truth(loaded: dict | list) -> dict:
    """A loaded ground-truth JSON as COCO: a COCO dict as it is, a Label Studio JSON export converted."""
    if isinstance(loaded, list):
        return coco_from_labelstudio(loaded)
    if isinstance(loaded, dict) and {"images", "annotations", "categories"} <= loaded.keys():
        if any(not a.get("id") for a in loaded["annotations"]):
            # Label Studio's COCO export numbers annotations from 0, and pycocotools takes a match to id 0 for
            # no match (its matched-id arrays use 0 for none): numbered from 1, every true object can be found.
            return loaded | {"annotations": [a | {"id": n} for n, a in enumerate(loaded["annotations"], start=1)]}
        return loaded
    raise ValueError("ground truth must be COCO (images, annotations, categories) or a Label Studio JSON export "
                     "(a list of tasks)")


def final_annotation(task: dict) -> dict | None:
    """The task's latest annotation that was not cancelled (None: nobody reviewed it)."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return max(kept, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id") or 0),
               default=None)


def coco_from_labelstudio(tasks: list[dict]) -> dict:
    """Label Studio JSON export tasks -> COCO with `task` on each annotation and a `captions` list; tasks
    nobody annotated are left out (they are not ground truth)."""
    images, annotations, captions, labels = [], [], [], {}
    for task in tasks:
        annotation = final_annotation(task)
        if annotation is None:
            continue
        data = task.get("data") or {}
        image_id = len(images) + 1
        regions = annotation.get("result") or []
        sized = [r for r in regions if r.get("original_width")]
        width, height = (sized[0]["original_width"], sized[0]["original_height"]) if sized else (0, 0)
        images.append({"id": image_id, "file_name": data.get("source_uri") or data.get(IMAGE, ""),
                       "width": width, "height": height, "label_studio_task": task.get("id"),
                       "row_image_id": data.get("image_id")})
        for region in regions:
            value, kind = region.get("value") or {}, region.get("type")
            if kind == "textarea" and region.get("from_name", "").startswith("caption") and value.get("text"):
                captions.append({"image_id": image_id, "caption": value["text"][0]})
                continue
            if kind == "rectanglelabels" and region.get("from_name") in TASK_OF_RECTANGLES:
                label, object_task = value["rectanglelabels"][0], TASK_OF_RECTANGLES[region["from_name"]]
                w, h = region["original_width"], region["original_height"]
                bbox = [value["x"] * w / 100, value["y"] * h / 100, value["width"] * w / 100,
                        value["height"] * h / 100]
                record = {"bbox": bbox, "area": bbox[2] * bbox[3], "segmentation": []}
            elif kind == "brushlabels" and region.get("from_name") in TASK_OF_BRUSHES:
                label, object_task = value["brushlabels"][0], TASK_OF_BRUSHES[region["from_name"]]
                h, w = region["original_height"], region["original_width"]
                rle = mask_utils.encode(np.asfortranarray(brush_rle_to_mask(value["rle"], h, w).astype(np.uint8)))
                record = {"bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(mask_utils.area(rle)),
                          "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}}
            else:
                continue
            category = labels.setdefault(label, len(labels) + 1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "iscrowd": 0, "task": object_task, **record})
    categories = [{"id": number, "name": label} for label, number in labels.items()]
    return {"images": images, "annotations": annotations, "categories": categories, "captions": captions}
