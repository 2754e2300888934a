"""``model.summary()`` in Keras 3's layout: a box table of layers, output shapes and parameter
counts (and, for a functional model that is not a plain chain, the "Connected to" column: each
input of each node as ``layer[node][tensor]``), then the totals with their memory size."""

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


def _sequential_like(model) -> bool:
    """Keras's test: one node per depth with one input each, and no layer called twice."""
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        return True
    for nodes in by_depth.values():
        if len(nodes) > 1 or (len(nodes) == 1 and len(nodes[0].input_tensors) > 1):
            return False
    ids = {id(n) for nodes in by_depth.values() for n in nodes}
    return all(sum(id(n) in ids for n in layer._inbound_nodes) <= 1 for layer in model.layers)


def _ratio_reduce(total: int, count: int) -> list[int]:
    """Share ``total`` out over ``count`` columns as rich's tables do (round half to even)."""
    shares, remaining = [], total
    for left in range(count, 0, -1):
        share = round(remaining / left)
        shares.append(share)
        remaining -= share
    return shares


def _connections(model, layer) -> str:
    parts = []
    for node in layer._inbound_nodes:
        if id(node) not in model._node_ids:
            continue
        for t in node.input_tensors:
            source, node_index, tensor_index = t._keras_history
            parts.append(f"{source.name}[{node_index}][{tensor_index}]")
    return ", ".join(parts) or "-"


def _output_shape(layer) -> str:
    if not layer.built:
        return format_shape(None)
    shape = layer.output_shape
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    return format_shape(shape)


def render_summary(model, line_length: int | None = None) -> str:
    chain = _sequential_like(model)
    if chain:
        default, positions = 88, (0.45, 0.80, 1.0)
        header = ("Layer (type)", "Output Shape", "Param #")
        align = ("left", "left", "right")
    else:
        default, positions = 108, (0.3, 0.56, 0.74, 1.0)
        header = ("Layer (type)", "Output Shape", "Param #", "Connected to")
        align = ("left", "left", "right", "left")
    if line_length is None:
        line_length = min(default, shutil.get_terminal_size().columns - 4)
    bounds = [int(p * line_length) for p in positions]
    widths = [b - a for a, b in zip([0, *bounds[:-1]], bounds)]
    if min(widths) < 4:
        raise ValueError("summary: the line is too short to print the table")
    # The borders take len(widths) + 1 characters, shared out as Keras's table does.
    cells = [w - r for w, r in zip(widths, _ratio_reduce(len(widths) + 1, len(widths)))]

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
    lines += row(header, "┃", "┃", "┃")
    lines.append(rule("┡", "╇", "┩", "━"))
    layers = model.layers
    for i, layer in enumerate(layers):
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        fields = [f"{layer.name} ({type(layer).__name__})", _output_shape(layer), params]
        if not chain:
            fields.append(_connections(model, layer))
        lines += row(fields)
        lines.append(rule("├", "┼", "┤", "─") if i < len(layers) - 1 else rule("└", "┴", "┘", "─"))
    if not layers:
        lines.append(rule("└", "┴", "┘", "─"))

    def size(weights) -> float:
        return float(sum(w.size * w.dtype.itemsize for w in weights))

    trainable, frozen = model.trainable_weights, model.non_trainable_weights
    n_train = sum(w.size for w in trainable)
    n_frozen = sum(w.size for w in frozen)
    optimizer = model.optimizer
    state = optimizer.get_state()["arrays"] if optimizer is not None else {}
    n_opt = opt_bytes = 0
    if state or (optimizer is not None and optimizer.iterations):  # Keras: once it is built
        # Keras counts its iteration counter (int32) and learning rate (float32) too.
        n_opt = sum(int(a.size) for a in state.values()) + 2
        opt_bytes = sum(a.size * a.dtype.itemsize for a in state.values()) + 4 + 4
    lines.append(f" Total params: {n_train + n_frozen + n_opt:,} "
                 f"({readable_size(size(trainable) + size(frozen) + opt_bytes)})")
    lines.append(f" Trainable params: {n_train:,} ({readable_size(size(trainable))})")
    lines.append(f" Non-trainable params: {n_frozen:,} ({readable_size(size(frozen))})")
    if n_opt:
        lines.append(f" Optimizer params: {n_opt:,} ({readable_size(opt_bytes)})")
    return "\n".join(lines)
