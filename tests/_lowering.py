"""XLA-level loops and branches of a StableHLO module: which `stablehlo.while` loops a lowering
holds, their trip counts, the total number of loop iterations one call runs, and which
`stablehlo.case` / `stablehlo.if` branches are picked by data.

On a GPU every iteration of an XLA `while` is at least one host round trip and a few kernel
launches, so the number of iterations (and whether it is known before the call) is what decides
whether a lowering can be fast there. A loop is *static* when its condition compares a counter
with a constant: the counter starts at a constant, the body adds a constant step to it, and the
bound is a constant (or a loop argument passed through unchanged that starts at a constant). This
is how `lax.fori_loop` with Python-int bounds, `lax.scan` and `lax.map` lower. Anything else
(`lax.while_loop` on data, `fori_loop` to a traced bound) is *data-dependent*.

Nesting is counted: a loop inside the body of another, directly or through `func.call`s of
private functions, runs once per outer iteration, so its iterations are multiplied by the outer
trip counts. Only functions reachable from `@main` count.

A branch is *static* when its selector is known at lowering: a constant, the result of another
`case` (how `lax.platform_dependent` maps the platform to its branch), or the platform index
argument of a multi-platform export; an argument of a private function is followed to what every
call passes, and a call's result to what the callee returns (a gradient's backward pass gets the
forward's platform branch index that way).
Anything else (`lax.cond` / `lax.switch` on data) is *data-dependent*: on a GPU it is a host
round trip that decides what runs next.

Usage: ``loops(jax.export.export(...)(...).mlir_module())`` -> ``LoopReport``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_FUNC = re.compile(r"func\.func\s+(?:public\s+|private\s+)?@(\"[^\"]*\"|[\w.$-]+)\(")
_WHILE = re.compile(r"stablehlo\.while\((.*?)\)\s*:")
_ITER_ARG = re.compile(r"(%[\w.$-]+)\s*=\s*(%[\w.$#-]+)")
_CONST = re.compile(r"^\s*(%[\w.$-]+)\s*=\s*stablehlo\.constant\s+dense<(-?\d+)>\s*:\s*tensor<u?i\d+>")
_CALL = re.compile(r"\bcall\s+@(\"[^\"]*\"|[\w.$-]+)\(([^)]*)\)")
_RETURN = re.compile(r"^\s*stablehlo\.return\s+([^:]*):")
_COMPARE = re.compile(r"^\s*(%[\w.$-]+)\s*=\s*stablehlo\.compare\s+(\w+),\s*(%[\w.$#-]+),\s*(%[\w.$#-]+)")
_ADD = re.compile(r"^\s*(%[\w.$-]+)\s*=\s*stablehlo\.(add|subtract)\s+(%[\w.$#-]+),\s*(%[\w.$#-]+)")
_CUSTOM_CALL = re.compile(r"stablehlo\.custom_call\s+@([\w.$-]+)")
_BRANCH = re.compile(r'(?:"stablehlo\.(case|if)"\(|\bstablehlo\.(case|if)\s+)(%[\w.$-]+)')
_DEFINES = re.compile(r"^\s*(%[\w.$-]+)(?::\d+)?\s*=\s*\"?([\w.]+)")
_ARGUMENT = re.compile(r"(%arg\d+):")
_FUNC_RETURN = re.compile(r"^\s*(?:func\.)?return\s+([^:]*):")
_CALL_RESULT = re.compile(r"^\s*(%[\w.$-]+)(?::\d+)?\s*=\s*call\s+@(\"[^\"]*\"|[\w.$-]+)\(")
_PLATFORM_INDEX = re.compile(r'(%[\w.$-]+):\s*tensor<[^>]*>\s*\{[^}]*"_platform_index"')
_STATIC_SELECTORS = {"stablehlo.constant", "stablehlo.case", "platform index"}


@dataclass
class Loop:
    """One `stablehlo.while` of a function.

    Attributes:
      function: the function that holds it.
      trip_count: iterations per execution, or None when data-dependent.
      condition: the comparison of its condition (or why it is data-dependent).
      iterations: total iterations in one call of `@main` (trip count times the trip counts of
        every enclosing loop and calling loop), or None when it or an enclosing loop is
        data-dependent; set by ``loops``.
    """

    function: str
    parent: Loop | None
    iter_args: list[tuple[str, str]]
    cond_lines: list[str] = field(default_factory=list)
    body_lines: list[str] = field(default_factory=list)
    trip_count: int | None = None
    condition: str = ""
    iterations: int | None = None


@dataclass
class Branch:
    """One `stablehlo.case` / `stablehlo.if` of a function: ``op`` ("case" or "if"), ``selector``
    (the operand that picks the branch), ``defined_by`` (the op that makes it, "argument" for a
    function or region argument, "platform index" for an export's platform argument) and
    ``static`` (see the module docstring)."""

    function: str
    op: str
    selector: str
    defined_by: str
    static: bool


@dataclass
class LoopReport:
    """The loops and branches reachable from `@main`: ``loops`` (each with its ``iterations``),
    ``total_iterations`` (sum over the static loops whose enclosing loops are static),
    ``data_dependent`` (the loops with no static trip count, or inside one), ``custom_calls``
    (target -> launches per call of `@main`, None inside a data-dependent loop), ``branches``
    (every case / if, once per call of its function) and ``data_dependent_branches`` (those picked
    by data)."""

    loops: list[Loop]
    total_iterations: int
    data_dependent: list[Loop]
    custom_calls: dict[str, int | None]
    branches: list[Branch]
    data_dependent_branches: list[Branch]

    def describe(self) -> str:
        """One line per loop (function, trip count, iterations per call) and per data-dependent branch."""
        lines = [
            (
                f"{len(self.loops)} while loops, {self.total_iterations} static iterations, "
                f"{len(self.data_dependent)} data-dependent; {len(self.branches)} branches, "
                f"{len(self.data_dependent_branches)} data-dependent; custom calls {self.custom_calls}"
            )
        ]
        for loop in self.loops:
            trip = "data-dependent" if loop.trip_count is None else f"trip {loop.trip_count}"
            lines.append(f"  @{loop.function}: {trip}, iterations {loop.iterations} ({loop.condition})")
        for branch in self.data_dependent_branches:
            lines.append(f"  @{branch.function}: {branch.op} on {branch.selector} from {branch.defined_by}")
        return "\n".join(lines)


@dataclass
class _Function:
    constants: dict[str, int] = field(default_factory=dict)
    loops: list[Loop] = field(default_factory=list)
    calls: list[tuple[str, Loop | None]] = field(default_factory=list)
    custom_calls: list[tuple[str, Loop | None]] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)  # SSA name -> the op that defines it
    arguments: list[str] = field(default_factory=list)
    returns: list[str] = field(default_factory=list)
    call_results: dict[str, str] = field(default_factory=dict)  # SSA name -> the function it calls
    call_operands: list[tuple[str, list[str]]] = field(default_factory=list)  # (callee, operands)
    branches: list[tuple[str, str]] = field(default_factory=list)  # (op, selector)


def _parse(text: str) -> dict[str, _Function]:
    """Functions of a StableHLO module with their constants, loops, calls and custom calls."""
    functions: dict[str, _Function] = {}
    current = name = None
    frames: list[tuple[str, Loop | None]] = []  # ("func" | "cond" | "body" | "other", loop)
    pending = None  # a while whose `cond {` has not been seen yet
    for raw in text.splitlines():
        line = _STRING.sub('""', raw)
        opens, closes = line.count("{"), line.count("}")
        enclosing = next((loop for kind, loop in reversed(frames) if kind in ("cond", "body")), None)
        if frames and frames[-1][0] in ("cond", "body") and not line.strip().startswith("}"):
            loop = frames[-1][1]
            (loop.cond_lines if frames[-1][0] == "cond" else loop.body_lines).append(line)
        if (match := _FUNC.search(raw)) is not None:
            name = match.group(1).strip('"')
            current = functions.setdefault(name, _Function())
            current.arguments = _ARGUMENT.findall(line)
            current.definitions.update((arg, "platform index") for arg in _PLATFORM_INDEX.findall(raw))
        elif current is not None:
            if (match := _CONST.match(line)) is not None:
                current.constants[match.group(1)] = int(match.group(2))
            if (match := _DEFINES.match(raw)) is not None:  # generic-form op names are strings
                current.definitions[match.group(1)] = match.group(2)
            if (match := _CALL_RESULT.match(raw)) is not None:
                current.call_results[match.group(1)] = match.group(2).strip('"')
            if (match := _FUNC_RETURN.match(line)) is not None:
                current.returns = [v.strip() for v in match.group(1).split(",")]
            for match in _BRANCH.finditer(raw):
                current.branches.append((match.group(1) or match.group(2), match.group(3)))
            if (match := _WHILE.search(line)) is not None:
                pending = Loop(function=name, parent=enclosing, iter_args=_ITER_ARG.findall(match.group(1)))
                current.loops.append(pending)
            for match in _CALL.finditer(raw):
                current.calls.append((match.group(1).strip('"'), enclosing))
                operands = [v.strip() for v in match.group(2).split(",") if v.strip()]
                current.call_operands.append((match.group(1).strip('"'), operands))
            for match in _CUSTOM_CALL.finditer(line):
                current.custom_calls.append((match.group(1), enclosing))
        stripped = line.strip()
        if stripped.startswith("}") and stripped.endswith("{") and frames and frames[-1][0] == "cond":
            frames[-1] = ("body", frames[-1][1])  # `} do {`
            continue
        for _ in range(closes - opens):
            frames.pop()
        for _ in range(opens - closes):
            if stripped.startswith("cond") and pending is not None:
                frames.append(("cond", pending))
                pending = None
            else:
                frames.append(("func" if _FUNC.search(line) else "other", None))
    return functions


def _defining(lines: list[str], pattern: re.Pattern, name: str):
    """The match of ``pattern`` on the line of ``lines`` that defines ``name`` (or None)."""
    for line in lines:
        match = pattern.match(line)
        if match is not None and match.group(1) == name:
            return match
    return None


def _trip_count(loop: Loop, constants: dict[str, int]) -> tuple[int | None, str]:
    """(trip count or None, description) of one loop."""
    ret = next((m for m in map(_RETURN.match, loop.cond_lines) if m is not None), None)
    if ret is None:
        return None, "no condition found"
    predicate = ret.group(1).strip()
    compare = _defining(loop.cond_lines, _COMPARE, predicate)
    if compare is None:
        return None, "condition is not a single comparison"
    direction, lhs, rhs = compare.group(2), compare.group(3), compare.group(4)
    text = f"{lhs} {direction} {rhs}"
    names = [name for name, _ in loop.iter_args]
    body_ret = next((m for m in map(_RETURN.match, loop.body_lines) if m is not None), None)
    if body_ret is None:
        return None, f"{text}: body returns nothing"
    returned = [v.strip() for v in body_ret.group(1).split(",")]

    def constant(value):
        """The value of a constant operand: a constant, or a loop argument that starts at one and
        is passed through unchanged."""
        if value in constants:
            return constants[value]
        if value in names:
            k = names.index(value)
            if returned[k] == value:
                return constants.get(loop.iter_args[k][1])
        return None

    def counter(value):
        """(start, step) of a counter argument, or None."""
        if value not in names:
            return None
        k = names.index(value)
        start = constants.get(loop.iter_args[k][1])
        update = _defining(loop.body_lines, _ADD, returned[k])
        if start is None or update is None:
            return None
        op, a, b = update.group(2), update.group(3), update.group(4)
        if a == value and b in constants:
            step = constants[b] if op == "add" else -constants[b]
        elif op == "add" and b == value and a in constants:
            step = constants[a]
        else:
            return None
        return start, step

    flip = {"LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE", "NE": "NE", "EQ": "EQ"}
    if counter(lhs) is not None and constant(rhs) is not None:
        (start, step), bound = counter(lhs), constant(rhs)
    elif counter(rhs) is not None and constant(lhs) is not None:
        (start, step), bound, direction = counter(rhs), constant(lhs), flip[direction]
    else:
        return None, f"{text}: not a counter against a constant"
    if direction in ("LT", "LE") and step > 0:
        count = math.ceil((bound + (direction == "LE") - start) / step)
    elif direction in ("GT", "GE") and step < 0:
        count = math.ceil((start - bound - (direction == "GE")) / -step)
    elif direction == "NE" and step != 0 and (bound - start) % step == 0 and (bound - start) // step >= 0:
        count = (bound - start) // step
    else:
        return None, f"{text}: start {start}, step {step}, bound {bound} never ends or is not understood"
    return max(count, 0), f"counter from {start} step {step} {direction} {bound}"


def _origin(functions: dict[str, _Function], name: str, value: str, entry: str, seen: frozenset = frozenset()) -> str:
    """The op that makes ``value`` in function ``name``, through calls: for a call's result, the
    origin of what the callee returns; for an argument of a function other than ``entry``, the
    origin of what its calls pass when all of them are static (else "argument")."""
    if (name, value) in seen:
        return "argument"
    seen = seen | {(name, value)}
    function = functions[name]
    base, _, index = value.partition("#")
    if base in function.call_results:
        callee, k = function.call_results[base], int(index or 0)
        returned = functions[callee].returns if callee in functions else []
        return _origin(functions, callee, returned[k], entry, seen) if k < len(returned) else "call"
    if base in function.definitions:
        return function.definitions[base]
    if name == entry or base not in function.arguments:
        return "argument"
    k = function.arguments.index(base)
    origins = {
        _origin(functions, caller, operands[k], entry, seen)
        for caller, f in functions.items()
        for callee, operands in f.call_operands
        if callee == name and k < len(operands)
    }
    return min(origins) if origins and origins <= _STATIC_SELECTORS else "argument"


def loops(text: str, entry: str = "main") -> LoopReport:
    """The ``LoopReport`` of a StableHLO module's text (``Exported.mlir_module()``)."""
    functions = _parse(text)
    for function in functions.values():
        for loop in function.loops:
            loop.trip_count, loop.condition = _trip_count(loop, function.constants)
    reached: list[Loop] = []
    branches: list[Branch] = []
    custom: dict[str, int | None] = {}

    def multiplier(loop: Loop | None, outer: int | None):
        """Executions of a region inside ``loop`` (None: unbounded) when its function runs ``outer`` times."""
        while loop is not None and outer is not None:
            outer = None if loop.trip_count is None else outer * loop.trip_count
            loop = loop.parent
        return outer

    def visit(name: str, runs: int | None):
        function = functions[name]
        for loop in function.loops:
            entered = multiplier(loop.parent, runs)
            iterations = None if entered is None or loop.trip_count is None else entered * loop.trip_count
            reached.append(Loop(**{**loop.__dict__, "iterations": iterations}))
        for op, selector in function.branches:
            defined_by = _origin(functions, name, selector, entry)
            branches.append(Branch(name, op, selector, defined_by, defined_by in _STATIC_SELECTORS))
        for target, loop in function.custom_calls:
            launches = multiplier(loop, runs)
            custom[target] = (
                None if launches is None or custom.get(target, 0) is None else custom.get(target, 0) + launches
            )
        for callee, loop in function.calls:
            visit(callee, multiplier(loop, runs))

    visit(entry, 1)
    static = [loop for loop in reached if loop.iterations is not None]
    return LoopReport(
        loops=reached,
        total_iterations=sum(loop.iterations for loop in static),
        data_dependent=[loop for loop in reached if loop.iterations is None],
        custom_calls=custom,
        branches=branches,
        data_dependent_branches=[branch for branch in branches if not branch.static],
    )
