"""Computation graphs drawn for the chain-rule notebooks (02 and 16).

A graph is a list of nodes with positions and a list of edges. Values are
drawn as rounded boxes, operations as circles. Each edge can carry two
labels: the forward value it carries (black, above the arrow) and the
gradient that flows back along it (red, below, with a red arrow pointing
back), so one picture shows both passes the way CS231n's circuit diagrams do.

    nodes = {"x": Node(0, 0, "x"), "mul": Node(1, 0, "×", op=True), ...}
    edges = [Edge("x", "mul", forward="2.0", backward="-4.0"), ...]
    draw_graph(ax, nodes, edges, title="f = (x + y) z")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

FORWARD_COLOR = "#1d3557"
BACKWARD_COLOR = "#d1495b"
OP_FACE = "#f1faee"
VALUE_FACE = "#e9f0f7"


@dataclass(frozen=True)
class Node:
    """A node at (x, y) in data units; `op` draws a circle (an operation), else a box (a value)."""

    x: float
    y: float
    text: str
    op: bool = False


@dataclass(frozen=True)
class Edge:
    """An arrow from node `source` to node `target`, with optional forward and backward labels."""

    source: str
    target: str
    forward: str = ""
    backward: str = ""


def draw_graph(ax, nodes: Mapping[str, Node], edges: Sequence[Edge], *, title: str = "",
               radius: float = 0.28) -> None:
    """Draw the graph on `ax`: nodes, forward arrows with their values, gradients flowing back.

    Args:
        ax: a matplotlib Axes; its grid and axes are switched off.
        nodes: name -> Node, positions in data units (about 1 apart reads well).
        edges: the arrows, each from a node that feeds another.
        title: the Axes title.
        radius: half the size of a node, in data units.
    """
    for node in nodes.values():
        _draw_node(ax, node, radius)
    for edge in edges:
        _draw_edge(ax, nodes[edge.source], nodes[edge.target], edge, radius)
    xs = [n.x for n in nodes.values()]
    ys = [n.y for n in nodes.values()]
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)


def _draw_node(ax, node: Node, radius: float) -> None:
    if node.op:
        ax.add_patch(Circle((node.x, node.y), radius, facecolor=OP_FACE, edgecolor=FORWARD_COLOR))
    else:
        ax.add_patch(FancyBboxPatch((node.x - radius, node.y - radius * 0.75), 2 * radius,
                                    1.5 * radius, boxstyle="round,pad=0.05",
                                    facecolor=VALUE_FACE, edgecolor=FORWARD_COLOR))
    ax.text(node.x, node.y, node.text, ha="center", va="center", fontsize=10)


def _draw_edge(ax, start: Node, end: Node, edge: Edge, radius: float) -> None:
    dx, dy = end.x - start.x, end.y - start.y
    length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    ux, uy = dx / length, dy / length
    a = (start.x + ux * radius * 1.1, start.y + uy * radius * 1.1)
    b = (end.x - ux * radius * 1.1, end.y - uy * radius * 1.1)
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, color=FORWARD_COLOR))
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    normal = (-uy, ux)  # left of the arrow: forward label; right of it: the gradient
    if edge.forward:
        ax.text(mid[0] + normal[0] * 0.14, mid[1] + normal[1] * 0.14, edge.forward,
                ha="center", va="center", fontsize=8, color=FORWARD_COLOR)
    if edge.backward:
        back_a = (b[0] - normal[0] * 0.1, b[1] - normal[1] * 0.1)
        back_b = (a[0] - normal[0] * 0.1, a[1] - normal[1] * 0.1)
        ax.add_patch(FancyArrowPatch(back_a, back_b, arrowstyle="-|>", mutation_scale=8,
                                     color=BACKWARD_COLOR, linestyle=(0, (3, 2)), linewidth=0.8))
        ax.text(mid[0] - normal[0] * 0.28, mid[1] - normal[1] * 0.28, edge.backward,
                ha="center", va="center", fontsize=8, color=BACKWARD_COLOR)
