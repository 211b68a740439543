"""Writes tests/data/mixed.csv: a small table with numeric and categorical columns and empty or NA cells, whose
columns depend on each other (so a model can fill one from the others). Seeded: the same file every time.

Run: python tests/data/make_mixed_table.py
"""

import csv
from pathlib import Path

import numpy as np

rng = np.random.default_rng(0)
n = 400
size = rng.choice(["small", "medium", "large"], n)
width = np.select([size == "small", size == "medium"], [10.0, 20.0], 30.0) + rng.normal(0, 1.5, n)
material = rng.choice(["wood", "steel"], n, p=[0.6, 0.4])
weight = 0.02 * width**1.5 * np.where(material == "steel", 3.0, 1.0) + rng.normal(0, 0.1, n)
colour = np.where(material == "steel", rng.choice(["grey", "blue"], n), rng.choice(["brown", "red"], n))
price = 4 * weight + np.where(material == "steel", 10, 0) + rng.normal(0, 1, n)
rows = [[s, f"{w:.2f}", m, f"{kg:.3f}", c, f"{p:.2f}"] for s, w, m, kg, c, p in
        zip(size, width, material, weight, colour, price)]
holes = rng.random((n, 6)) < 0.08
for i, j in zip(*holes.nonzero()):
    rows[i][j] = "NA" if (i + j) % 3 == 0 else ""
with open(Path(__file__).with_name("mixed.csv"), "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["size", "width_cm", "material", "weight_kg", "colour", "price"])
    writer.writerows(rows)
