"""Syntax tree -> canonical TL text (`qimeng-serve tl fmt`). parse_tl(print_tl(p)) == p."""

from __future__ import annotations

from qimeng_serve.tl import ast

INDENT = "  "
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2}


def print_expr(e: ast.Expr, parent_prec: int = 0) -> str:
    if isinstance(e, ast.Num):
        return repr(e.value)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.BinOp):
        prec = _PREC[e.op]
        # left-associative: the right operand needs parentheses at equal precedence
        text = f"{print_expr(e.left, prec)} {e.op} {print_expr(e.right, prec + 1)}"
        return f"({text})" if prec < parent_prec else text
    if isinstance(e, ast.Neg):
        text = f"-{print_expr(e.operand, 3)}"
        return f"({text})" if parent_prec > 3 else text
    if isinstance(e, ast.Transpose):
        return f"{print_expr(e.operand, 4)}.T"
    if isinstance(e, ast.Call):
        parts = [print_expr(a) for a in e.args] + [f"{k}={print_expr(v)}" for k, v in e.kwargs]
        return f"{e.func}({', '.join(parts)})"
    if isinstance(e, ast.Indexed):
        return f"{e.base}[{', '.join(print_index(i) for i in e.indices)}]"
    raise TypeError(f"not a TL expression: {e!r}")


def print_index(i) -> str:
    if isinstance(i, ast.Slice):
        return f"{print_expr(i.lo)} : {print_expr(i.hi)}"
    return print_expr(i)


def _print_options(options: ast.Options) -> str:
    if not options:
        return ""
    return " with " + ", ".join(f"{o.key}={o.value}" for o in options)


def _print_stmt(s: ast.Stmt, depth: int) -> list[str]:
    pad = INDENT * depth
    if isinstance(s, ast.Comment):
        return [f"{pad}#{s.text}"]
    if isinstance(s, ast.Let):
        return [f"{pad}let {s.name} = {print_expr(s.value)}"]
    if isinstance(s, ast.Allocate):
        shape = ", ".join(print_expr(d) for d in s.shape)
        return [f"{pad}Allocate {s.name} : {s.level} {s.dtype} [{shape}]{_print_options(s.options)}"]
    if isinstance(s, ast.Copy):
        return [f"{pad}Copy {print_expr(s.dst)} <- {print_expr(s.src)}{_print_options(s.options)}"]
    if isinstance(s, ast.Compute):
        return [f"{pad}Compute {s.dst} {s.op} {print_expr(s.value)}{_print_options(s.options)}"]
    if isinstance(s, ast.Reshape):
        return [f"{pad}Reshape {s.dst} <- {s.src}{_print_options(s.options)}"]
    if isinstance(s, ast.Loop):
        head = f"{pad}Loop {s.var} in {print_expr(s.start)} .. {print_expr(s.stop)}{_print_options(s.options)} {{"
        return [head, *_print_block(s.body, depth + 1), f"{pad}}}"]
    if isinstance(s, ast.Role):
        return [f"{pad}Role {s.role}{_print_options(s.options)} {{", *_print_block(s.body, depth + 1), f"{pad}}}"]
    if isinstance(s, (ast.Wait, ast.Release)):
        return [f"{pad}{type(s).__name__} {', '.join(s.buffers)}"]
    raise TypeError(f"not a TL statement: {s!r}")


def _print_block(items, depth: int) -> list[str]:
    lines: list[str] = []
    comments_from = None  # where the run of own-line comments just before this item starts
    for item in items:
        if isinstance(item, ast.Comment) and item.inline and lines:
            lines[-1] += f"  #{item.text}"
            continue
        printed = _print_item(item, depth)
        if printed and printed[0] == "" and comments_from is not None:
            # a block's separating blank line goes above the comments that introduce it
            lines.insert(comments_from, "")
            printed = printed[1:]
        is_comment = isinstance(item, ast.Comment)
        comments_from = (comments_from if comments_from is not None else len(lines)) if is_comment else None
        lines.extend(printed)
    return lines


def _print_item(item, depth: int) -> list[str]:
    pad = INDENT * depth
    if isinstance(item, ast.ProgramDecl):
        return [f"program {item.name}"]
    if isinstance(item, ast.OpDecl):
        return [f"op {item.op}"]
    if isinstance(item, ast.TargetsDecl):
        return [f"targets {', '.join(item.targets)}"]
    if isinstance(item, ast.Param):
        return [f"{pad}{item.name} = {print_expr(item.value)}"]
    if isinstance(item, ast.ParamsBlock):
        guard = " when " + " and ".join(f"{name} = {value}" for name, value in item.guard) if item.guard else ""
        return ["", f"params{guard} {{", *_print_block(item.items, depth + 1), "}"]
    if isinstance(item, ast.Kernel):
        grid = ", ".join(f"{g.name} : {print_expr(g.extent)}" for g in item.grid)
        head = f"kernel {item.name} grid ({grid}){_print_options(item.options)} {{"
        return ["", head, *_print_block(item.body, depth + 1), "}"]
    return _print_stmt(item, depth)


def print_tl(program: ast.Program) -> str:
    lines = _print_block(program.items, 0)
    while lines and lines[0] == "":
        lines.pop(0)
    return "\n".join(lines) + "\n"
