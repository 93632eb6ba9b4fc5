"""TL text -> syntax tree (qimeng_serve.tl.ast), with line:column errors."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from qimeng_serve.errors import Span, TLSyntaxError
from qimeng_serve.tl import ast

MEMORY_LEVELS = ("shared", "register")
ROLES = ("producer", "consumer")

# Friendly names for the grammar's terminals, used in "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "OPTVAL": "an option value",
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "COLON": "':'", "COMMA": "','", "EQUAL": "'='", "PLUSEQUAL": "'+='", "__ANON_0": "'<-'",
    "MINUS": "'-'", "PLUS": "'+'", "STAR": "'*'", "SLASH": "'/'", "PERCENT": "'%'",
}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files("qimeng_serve.tl").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _span(meta_or_token) -> Span | None:
    line = getattr(meta_or_token, "line", None)
    col = getattr(meta_or_token, "column", None)
    return Span(line, col) if line is not None else None


@v_args(meta=True)
class _ToAst(Transformer):
    # ---- expressions
    def int_lit(self, meta, c):
        return ast.Num(int(c[0]), _span(c[0]))

    def float_lit(self, meta, c):
        return ast.Num(float(c[0]), _span(c[0]))

    def name(self, meta, c):
        return ast.Name(str(c[0]), _span(c[0]))

    def _bin(op):
        def f(self, meta, c):
            return ast.BinOp(op, c[0], c[1], _span(meta))
        return f

    add, sub, mul, div, mod = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("%")

    def neg(self, meta, c):
        return ast.Neg(c[0], _span(meta))

    def transpose(self, meta, c):
        return ast.Transpose(c[0], _span(meta))

    def kwarg(self, meta, c):
        return ("kw", str(c[0]), c[1])

    def call(self, meta, c):
        func, rest = str(c[0]), [x for x in c[1:] if x is not None]
        args = tuple(x for x in rest if not (isinstance(x, tuple) and x and x[0] == "kw"))
        kwargs = tuple((x[1], x[2]) for x in rest if isinstance(x, tuple) and x and x[0] == "kw")
        return ast.Call(func, args, kwargs, _span(c[0]))

    def slice(self, meta, c):
        return ast.Slice(c[0], c[1], _span(meta))

    def indexed(self, meta, c):
        return ast.Indexed(str(c[0]), tuple(c[1:]), _span(c[0]))

    # ---- statements
    def option(self, meta, c):
        return ast.Option(str(c[0]), str(c[1]), _span(c[0]))

    def options(self, meta, c):
        return tuple(c)

    def comment(self, meta, c):
        return ast.Comment(str(c[0])[1:].rstrip(), False, _span(c[0]))

    def let_stmt(self, meta, c):
        return ast.Let(str(c[0]), c[1], _span(meta))

    def shape(self, meta, c):
        return tuple(c)

    def allocate(self, meta, c):
        name, level, dtype, shape = str(c[0]), str(c[1]), str(c[2]), c[3]
        if level not in MEMORY_LEVELS:
            raise TLSyntaxError(
                f"unknown memory level '{level}' for {name}",
                _span(c[1]),
                fix="Allocate buffers in 'shared' or 'register'; global tensors (Q, K, V, O) exist already",
            )
        opts = c[4] if len(c) > 4 else ()
        return ast.Allocate(name, level, dtype, shape, opts, _span(meta))

    def copy(self, meta, c):
        return ast.Copy(c[0], c[1], c[2] if len(c) > 2 else (), _span(meta))

    def assign_op(self, meta, c):
        return str(c[0])

    def compute(self, meta, c):
        return ast.Compute(str(c[0]), c[1], c[2], c[3] if len(c) > 3 else (), _span(meta))

    def reshape(self, meta, c):
        return ast.Reshape(str(c[0]), str(c[1]), c[2] if len(c) > 2 else (), _span(meta))

    def loop(self, meta, c):
        var, start, stop, rest = str(c[0]), c[1], c[2], list(c[3:])
        opts = rest.pop(0) if rest and isinstance(rest[0], tuple) else ()
        return ast.Loop(var, start, stop, _attach_inline(rest), opts, _span(meta))

    def role(self, meta, c):
        name, rest = str(c[0]), list(c[1:])
        if name not in ROLES:
            raise TLSyntaxError(f"unknown role '{name}'", _span(c[0]),
                                fix="a Role is `producer` (issues the TMA copies) or `consumer` (computes)")
        opts = rest.pop(0) if rest and isinstance(rest[0], tuple) else ()
        return ast.Role(name, _attach_inline(rest), opts, _span(meta))

    def wait(self, meta, c):
        return ast.Wait(tuple(str(x) for x in c), _span(meta))

    def release(self, meta, c):
        return ast.Release(tuple(str(x) for x in c), _span(meta))

    # ---- top level
    def grid_dim(self, meta, c):
        return ast.GridDim(str(c[0]), c[1], _span(meta))

    def kernel(self, meta, c):
        name = str(c[0])
        grid = tuple(x for x in c[1:] if isinstance(x, ast.GridDim))
        rest = [x for x in c[1:] if not isinstance(x, ast.GridDim)]
        opts = rest.pop(0) if rest and isinstance(rest[0], tuple) else ()
        return ast.Kernel(name, grid, _attach_inline(rest), _span(meta), opts)

    def program_decl(self, meta, c):
        return ast.ProgramDecl(str(c[0]), _span(meta))

    def op_decl(self, meta, c):
        return ast.OpDecl(str(c[0]), _span(meta))

    def targets_decl(self, meta, c):
        return ast.TargetsDecl(tuple(str(t) for t in c), _span(meta))

    def param(self, meta, c):
        return ast.Param(str(c[0]), c[1], _span(meta))

    def condition(self, meta, c):
        return str(c[0]), int(c[1])

    def guard(self, meta, c):
        return ("guard", tuple(c))

    def params_block(self, meta, c):
        items = list(c)
        guard = None
        if items and isinstance(items[0], tuple) and items[0][0] == "guard":
            guard = items.pop(0)[1]
        return ast.ParamsBlock(_attach_inline(items), guard, _span(meta))

    def start(self, meta, c):
        return ast.Program(_attach_inline(list(c)))


def _end_line(node) -> int | None:
    """The line a node ends on, for deciding whether a comment trails it."""
    span = getattr(node, "span", None)
    if isinstance(node, (ast.Loop, ast.Role, ast.Kernel, ast.ParamsBlock)):
        return None  # a comment after a closing brace sits on its own line in printed form
    return span.line if span else None


def _attach_inline(items: list) -> tuple:
    """Mark comments written on the same line as the statement before them as inline."""
    out = []
    for item in items:
        if isinstance(item, ast.Comment) and out and item.span is not None:
            prev = out[-1]
            if not isinstance(prev, ast.Comment) and _end_line(prev) == item.span.line:
                item = ast.Comment(item.text, True, item.span)
        out.append(item)
    return tuple(out)


def _expected(tokens) -> str:
    names = sorted({_TERMINAL_NAMES.get(t, f"'{t.lower()}'" if t.isupper() else t) for t in tokens})
    return ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")


def _end_of(source: str) -> Span:
    """Where the text ends: just after the last character of the last non-empty line."""
    lines = source.rstrip().splitlines() or [""]
    return Span(len(lines), len(lines[-1]) + 1)


def parse_tl(source: str, source_name: str = "<tl>") -> ast.Program:
    """Parse TL text. Raises TLSyntaxError pointing at the offending line and column."""
    try:
        tree = _lark().parse(source)
        return _ToAst().transform(tree)
    except VisitError as e:  # errors raised inside the transformer
        if isinstance(e.orig_exc, TLSyntaxError):
            e.orig_exc.source_name = source_name
            raise e.orig_exc from None
        raise
    except UnexpectedCharacters as e:
        raise TLSyntaxError(
            f"unexpected character {source[e.pos_in_stream]!r}",
            Span(e.line, e.column),
            fix="TL uses names, numbers, ( ) [ ] { } , : = += <- .. + - * / % and '#' comments; see docs/tl.md",
            source_name=source_name,
        ) from None
    except UnexpectedToken as e:
        tok: Token = e.token
        if tok.type == "$END":
            raise TLSyntaxError(
                f"unexpected end of file, expected {_expected(e.expected)}",
                _end_of(source),
                fix="close every '{' with '}' and finish the last statement",
                source_name=source_name,
            ) from None
        raise TLSyntaxError(
            f"unexpected {tok.value!r}, expected {_expected(e.expected)}",
            Span(tok.line, tok.column),
            fix="statements start with Allocate, Copy, Compute, Reshape, Loop, Role, Wait, Release or let; see docs/tl.md for the grammar",
            source_name=source_name,
        ) from None
    except (UnexpectedEOF, UnexpectedInput) as e:
        raise TLSyntaxError(
            "unexpected end of input", Span(getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1),
            fix="close every '{' with '}'", source_name=source_name,
        ) from None


def parse_tl_file(path) -> ast.Program:
    from pathlib import Path

    p = Path(path)
    return parse_tl(p.read_text(), source_name=str(p))
