"""``model.summary()`` in Keras 3's layout: a box table of layers, output shapes and parameter
counts, then the totals with their memory size."""

from __future__ import annotations

import shutil


def readable_size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes / 1024 < 1:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} PB"


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap; a word longer than the cell is cut with an ellipsis."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        if len(word) > width:
            word = word[:width - 1] + "…"
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return lines


def format_shape(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def render_summary(model, line_length: int | None = None) -> str:
    if line_length is None:
        line_length = min(88, shutil.get_terminal_size().columns - 4)
    positions = (0.45, 0.80, 1.0)
    bounds = [int(p * line_length) for p in positions]
    widths = [bounds[0], bounds[1] - bounds[0], bounds[2] - bounds[1]]
    if min(widths) < 4:
        raise ValueError("summary: the line is too short to print the table")
    # Four borders take four characters, shared out as Keras's table does.
    cells = [widths[0] - 1, widths[1] - 2, widths[2] - 1]
    align = ("left", "left", "right")

    def row(fields, left="│", mid="│", right="│") -> list[str]:
        wrapped = [_wrap(str(f), c - 2) for f, c in zip(fields, cells)]
        height = max(len(w) for w in wrapped)
        out = []
        for i in range(height):
            parts = []
            for lines, c, a in zip(wrapped, cells, align):
                text = lines[i] if i < len(lines) else ""
                text = text.rjust(c - 2) if a == "right" else text.ljust(c - 2)
                parts.append(f" {text} ")
            out.append(left + mid.join(parts) + right)
        return out

    def rule(left, mid, right, fill) -> str:
        return left + mid.join(fill * c for c in cells) + right

    lines = [f'Model: "{model.name}"', rule("┏", "┳", "┓", "━")]
    lines += row(("Layer (type)", "Output Shape", "Param #"), "┃", "┃", "┃")
    lines.append(rule("┡", "╇", "┩", "━"))
    layers = model.layers
    for i, layer in enumerate(layers):
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        lines += row((f"{layer.name} ({type(layer).__name__})",
                      format_shape(layer.output_shape if layer.built else None), params))
        lines.append(rule("├", "┼", "┤", "─") if i < len(layers) - 1 else rule("└", "┴", "┘", "─"))
    if not layers:
        lines.append(rule("└", "┴", "┘", "─"))

    def size(weights) -> float:
        return float(sum(w.size * w.dtype.itemsize for w in weights))

    trainable, frozen = model.trainable_weights, model.non_trainable_weights
    n_train = sum(w.size for w in trainable)
    n_frozen = sum(w.size for w in frozen)
    lines.append(f" Total params: {n_train + n_frozen:,} "
                 f"({readable_size(size(trainable) + size(frozen))})")
    lines.append(f" Trainable params: {n_train:,} ({readable_size(size(trainable))})")
    lines.append(f" Non-trainable params: {n_frozen:,} ({readable_size(size(frozen))})")
    state = model.optimizer.get_state()["arrays"] if model.optimizer is not None else {}
    if state:
        # Keras counts the iteration counter and the learning rate as optimizer variables too.
        count = sum(int(a.size) for a in state.values()) + 2
        nbytes = sum(a.size * a.dtype.itemsize for a in state.values()) + 8 + 4
        lines.append(f" Optimizer params: {count:,} ({readable_size(nbytes)})")
    return "\n".join(lines)
