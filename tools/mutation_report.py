"""Write the `make mutation` report: per-module score and every mutant the tests let live.

Run by `make mutation` in the mutation venv, from the folder mutmut ran in (it reads
mutants/ there); the modules come from pyproject.toml's [tool.mutmut] only_mutate, the one
list of them. Known equivalent mutants (no test can tell them from the original) are kept,
each with its reason, in tools/mutation_equivalents.txt.
"""

import argparse
import ast
from collections import Counter
import json
import pathlib
import re
import sys
import tomllib

BEGIN, END = '<!-- mutation-report:begin -->', '<!-- mutation-report:end -->'
# mutmut's exit codes (mutmut.stats.status_by_exit_code): 0 is a mutant every test passed
# on, 5 and 33 one that no selected test reaches, None one not run; any other code is a
# test that failed, timed out or crashed (ONNX Runtime aborts on some mutants): killed.
SURVIVED = {0}
NO_TESTS = {5, 33}
MANGLE = 'ǁ'


def cell(text: str) -> str:
    """Text for a Markdown table cell: a `|` (as in `float | None`) would split it."""
    return text.replace('|', '\\|')


def load_equivalents(path: pathlib.Path) -> dict[str, str]:
    """'mutant name: reason' lines; '#' starts a comment."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            name, _, reason = line.partition(': ')
            out[name.strip()] = cell(reason.strip())
    return out


def function_of(name: str) -> tuple[str, str | None, str]:
    """(module, class or None, function) of a mutant name like m.xǁCǁf__mutmut_3."""
    module, _, mangled = name.rpartition('__mutmut_')[0].rpartition('.')
    if mangled.startswith('x' + MANGLE):
        _, cls, func = mangled.split(MANGLE)
        return module, cls, func
    return module, None, mangled[2:]  # x_<name>


def def_line(source: str, cls: str | None, func: str) -> int:
    """First line (decorators included) of the function or method in the original source."""
    tree = ast.parse(source)
    scope = tree.body
    if cls is not None:
        scope = next(n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    node = next(n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                and n.name == func)
    return min([node.lineno] + [d.lineno for d in node.decorator_list])


def describe(name: str, path: pathlib.Path, source: str) -> tuple[int, str]:
    """(line in the original file, '- old / + new') of one mutant."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # the pinned mutmut's own

    diff = get_diff_for_mutant(name, path=path).splitlines()
    _, cls, func = function_of(name)
    start = def_line(source, cls, func)
    base, offset, first, old, new = start, 0, None, [], []
    for row in diff:
        hunk = re.match(r'@@ -(\d+)', row)
        if hunk:
            base, offset = start + int(hunk.group(1)) - 1, 0
        elif row.startswith(('---', '+++')):
            continue
        elif row.startswith('-'):
            old.append(row[1:].strip())
            first = first or base + offset
            offset += 1
        elif row.startswith('+'):
            new.append(row[1:].strip())
            first = first or base + offset
        else:
            offset += 1
    return first or start, cell(f"`{' '.join(old)}` -> `{' '.join(new)}`")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repo', type=pathlib.Path, required=True, help='the repository')
    parser.add_argument('--out', type=pathlib.Path, required=True, help='report to update')
    parser.add_argument('--seconds', type=float, default=None, help='run time of mutmut run')
    args = parser.parse_args()
    config = tomllib.loads((args.repo / 'pyproject.toml').read_text())['tool']['mutmut']
    equivalents = load_equivalents(args.repo / 'tools' / 'mutation_equivalents.txt')
    tests = ', '.join(f'`{t}`' for t in config['pytest_add_cli_args_test_selection'])
    rows, survivors, seen = [], [], set()
    totals = Counter()
    for module in config['only_mutate']:
        path = pathlib.Path(module)
        meta = json.loads((pathlib.Path('mutants') / f'{module}.meta').read_text())
        source = (args.repo / module).read_text()
        count = Counter()
        for name, code in sorted(meta['exit_code_by_key'].items(),
                                 key=lambda kv: (kv[0].rpartition('_')[0],
                                                 int(kv[0].rpartition('_')[2]))):
            if code is not None and code not in SURVIVED | NO_TESTS:
                count['killed'] += 1
                continue
            status = ('survived' if code in SURVIVED else 'no tests' if code in NO_TESTS
                      else 'not run')
            line, change = describe(name, path, source)
            if name in equivalents:
                count['equivalent'] += 1
                seen.add(name)
            else:
                count['survived'] += 1
            survivors.append((module, line, name, status, change, equivalents.get(name)))
        count['total'] = len(meta['exit_code_by_key'])
        totals.update(count)
        rows.append((module, count))
    rows.append(('**all**', totals))

    lines = [BEGIN, '', f'Tests: {tests}, `-m "not dds"`.']
    if args.seconds is not None:
        lines.append(f'`make mutation` took {args.seconds / 60:.1f} min (mutmut, 1 worker).')
    lines += ['', '| module | killed | survived | equivalent | total | score |',
              '| --- | ---: | ---: | ---: | ---: | ---: |']
    for module, c in rows:
        judged = c['total'] - c['equivalent']
        score = f"{100 * c['killed'] / judged:.1f} %" if judged else '-'
        lines.append(f"| {module} | {c['killed']} | {c['survived']} | {c['equivalent']} "
                     f"| {c['total']} | {score} |")
    lines += ['', 'Score: killed / (total - equivalent). A mutant counts as killed when a test '
              'fails, times out or crashes on it; as survived when every test passes, none '
              'reaches it (`no tests`) or the run stopped before it (`not run`).', '']
    alive = [s for s in survivors if s[5] is None]
    lines += [f'### Surviving mutants ({len(alive)})', '']
    if alive:
        lines += ['| where | mutant | status | change |', '| --- | --- | --- | --- |']
        lines += [f'| {m}:{ln} | `{n.rpartition(".")[2]}` | {st} | {ch} |'
                  for m, ln, n, st, ch, _ in alive]
    else:
        lines.append('None.')
    equiv = [s for s in survivors if s[5] is not None]
    lines += ['', f'### Equivalent mutants ({len(equiv)})', '',
              'No test can tell these from the original; the reasons are kept in '
              '`tools/mutation_equivalents.txt`.', '']
    if equiv:
        lines += ['| where | mutant | change | why it is equivalent |',
                  '| --- | --- | --- | --- |']
        lines += [f'| {m}:{ln} | `{n.rpartition(".")[2]}` | {ch} | {why} |'
                  for m, ln, n, st, ch, why in equiv]
    stale = sorted(set(equivalents) - seen)
    if stale:
        lines += ['', 'Listed as equivalent but killed or gone (update the list): '
                  + ', '.join(f'`{n}`' for n in stale)]
    lines += ['', END]

    text = args.out.read_text() if args.out.exists() else f'# Mutation testing\n\n{BEGIN}\n{END}\n'
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    args.out.write_text(head + '\n'.join(lines) + tail)
    print(f'{args.out}: ' + ', '.join(f'{k} {v}' for k, v in totals.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
