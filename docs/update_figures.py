"""Copy the README's figures out of the stored notebooks, so they always match them.

Run after `python -m lib run --update-sources`:  python docs/update_figures.py
"""

import base64
from pathlib import Path

import nbformat

from lib.workbook.report import figures

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent / "notebooks"
# (notebook, which figure in it, file name in docs/)
README_FIGURES = [
    ("06_h4_numerical_precision.ipynb", 0, "error_vs_step.png"),
    ("03_h1_rng_state.ipynb", 0, "mask_agreement.png"),
    ("09_ablation.ipynb", 0, "ablation.png"),
]


def main() -> None:
    for name, index, target in README_FIGURES:
        payload = figures(nbformat.read(str(NOTEBOOKS / name), as_version=4))[index]
        (HERE / target).write_bytes(base64.b64decode(payload))
        print(f"docs/{target} <- {name} figure {index}")


if __name__ == "__main__":
    main()
