"""A small parts-list dataset in the three row formats a user may bring (helper for several tests)."""

from __future__ import annotations

import json
from pathlib import Path

PARTS = ("hex bolt", "wing nut", "flat washer", "spring pin", "ball bearing", "hinge", "bracket", "gasket",
         "rivet", "axle", "pulley", "spacer", "clamp", "bushing", "dowel", "shim", "grommet", "latch",
         "caster", "spring", "collar", "coupling", "knob", "handle", "seal", "valve", "nozzle", "sprocket")


def parts_rows(fmt: str = "alpaca", count: int = len(PARTS)) -> list[dict]:
    rows = []
    for number, part in enumerate(PARTS[:count], start=1):
        question, answer = f"What is the part number of the {part}?", f"The {part} is part P-{1000 + number}."
        if fmt == "alpaca":
            rows.append({"instruction": question, "input": "", "output": answer})
        elif fmt == "sharegpt":
            rows.append({"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]})
        else:
            rows.append({"messages": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}]})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
