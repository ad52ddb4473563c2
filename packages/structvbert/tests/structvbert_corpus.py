"""Test helper: a small image-text corpus (captions and questions) over synthetic region features."""

from __future__ import annotations

import json

import numpy as np
from structvbert_testing import COLORS, random_image, tsv_row, write_tsv, write_vocab

SHAPES = ["cat", "dog"]


def write_corpus(folder, num_images: int = 24):
    """features.tsv, pairs.json and vocab.txt in ``folder``; a color and a shape are decidable from the features."""
    rng = np.random.default_rng(0)
    rows, pairs = [], []
    for i in range(num_images):
        color, shape = i % 3, (i // 3) % 2
        noise, boxes, h, w = random_image(rng, 4 + i % 5)
        # Regions of one image share a scene vector, so a masked region's features follow from the others.
        feats = rng.standard_normal(16).astype(np.float32) + 0.2 * noise
        feats[:, color] += 4.0
        feats[:, 8 + shape] += 4.0
        n = len(boxes)
        rows.append(tsv_row(f"img{i}", feats, boxes, h, w, objects=np.full(n, shape), attrs=np.full(n, color)))
        pairs.append({"img_id": f"img{i}", "sent": f"the picture shows a {COLORS[color]} {SHAPES[shape]}"})
        pairs.append({"img_id": f"img{i}", "sent": "what is the color of it", "label": {COLORS[color]: 1.0}})
    write_tsv(folder / "features.tsv", rows)
    (folder / "pairs.json").write_text(json.dumps(pairs))
    write_vocab(folder)
