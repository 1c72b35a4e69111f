"""Plant faults a sailor would notice in the installed helm page, and see the browser test fail.

mutmut (`make mutation`) mutates the pure Python core; the page's JavaScript and what
helm.py sends it are checked only by test/test_helm_page.py in a real browser. This
plants one fault at a time (a sign, a unit, a value never updated, a plot that stops
growing, a key that sends the wrong amount) into the INSTALLED package that the test's
nodes and page run from, runs the test, and puts the file back, so each line says
whether the test caught it:

    source install/env.bash && cd /tmp && python ~/repo/tools/helm_page_faults.py [NAME ...]

About 15 s per fault on a 2-core machine. The files are restored after each run, also on
Ctrl-C or SIGTERM; if it was killed harder, `make setup` after touching autopilot_ros/
(or `git stash; make setup`) reinstalls them.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import signal
import subprocess
import sys
import time

TEST = pathlib.Path(__file__).resolve().parents[1] / 'test' / 'test_helm_page.py'

# name: (file in the package, text, replacement). None: the page before the silent-pilot fix.
FAULTS = {
    'awa side flipped': ('web/helm.js', "${deg > 0 ? 'stbd' : 'port'}",
                         "${deg > 0 ? 'port' : 'stbd'}"),
    'aws m/s shown as kn': ('web/helm.js', '(s.aws_ms * KNOTS_PER_MS).toFixed(1)',
                            '(s.aws_ms).toFixed(1)'),
    'stw m/s shown as kn': ('web/helm.js', '(s.stw_ms * KNOTS_PER_MS).toFixed(1)',
                            '(s.stw_ms).toFixed(1)'),
    'rudder % sign': ('web/helm.js', 'const p = Math.round(value * 100);',
                      'const p = Math.round(-value * 100);'),
    'rudder % unscaled': ('web/helm.js', 'const p = Math.round(value * 100);',
                          'const p = Math.round(value);'),
    'bar sign': ('web/helm.js', '`${50 + 50 * Math.max', '`${50 - 50 * Math.max'),
    'plot rudder sign': ('web/helm.js', '(0.5 - r / 2)', '(0.5 + r / 2)'),
    'error sign': ('web/helm.js', "${err > 0 ? '+' : ''}${err.toFixed(1)}",
                   "${err > 0 ? '-' : '+'}${Math.abs(err).toFixed(1)}"),
    'reason set once': ('web/helm.js', "$('reason').textContent = alive ? s.reason : '';",
                        "if (!$('reason').textContent) "
                        "$('reason').textContent = alive ? s.reason : '';"),
    'plot frozen': ('web/helm.js', '    page.points.push(',
                    '    if (!page.points.length) page.points.push('),
    'plot capped, no growth': ('web/helm.js',
                               'while (page.points.length && page.points[0][0] < oldest)',
                               'while (page.points.length > 30)'),
    'error line in standby': ('web/helm.js',
                              'page.points.push([msg.t, msg.engaged ? msg.heading_error_deg '
                              ': null,', 'page.points.push([msg.t, msg.heading_error_deg,'),
    'silent pilot old numbers': ('web/helm.js', 'percent(alive ? s.command : null)',
                                 'percent(s.command)'),
    'm1 sends +1': ('web/index.html', 'data-deg="-1"', 'data-deg="1"'),
    'nudge compass sign': ('helm.py', 'wrap_2pi(course.target + step)',
                           'wrap_2pi(course.target - step)'),
    'awa radians': ('helm.py', "'awa_deg': None if wind is None else _deg(wind.awa)",
                    "'awa_deg': None if wind is None else _num(wind.awa)"),
}

# Faults that change nothing the test can see: in standby the status's heading error is
# NaN, so the line is not drawn whether or not the page asks for it.
EQUIVALENT = {'error line in standby'}


def _stop(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # through the finally below, which restores the file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('names', nargs='*', help='faults to plant (default: all)')
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in FAULTS]
    if unknown:
        parser.error(f'unknown fault(s): {", ".join(unknown)}')
    spec = importlib.util.find_spec('autopilot_ros')
    if spec is None or spec.origin is None:
        parser.error('autopilot_ros is not importable: `source install/env.bash` first')
    package = pathlib.Path(spec.origin).resolve().parent
    if not (package / 'msg' / '__init__.py').is_file():
        parser.error(f'{package} is not the colcon install (run from outside the repository, '
                     'after `source install/env.bash`)')
    signal.signal(signal.SIGTERM, _stop)
    missed = 0
    for name in args.names or FAULTS:
        rel, text, replacement = FAULTS[name]
        path = package / rel
        saved = path.read_text()
        if text not in saved:
            print(f'{name:26s} NOT PLANTED: the text is not in {path} any more', flush=True)
            missed += 1
            continue
        try:
            path.write_text(saved.replace(text, replacement))
            start = time.monotonic()
            run = subprocess.run([sys.executable, '-m', 'pytest', str(TEST), '-q', '-x',
                                  '-p', 'no:cacheprovider'], capture_output=True, text=True,
                                 cwd=pathlib.Path.home())
        finally:
            path.write_text(saved)
        why = next((line[1:].strip() for line in run.stdout.splitlines()
                    if line.startswith('E ')), '')
        caught = run.returncode != 0
        verdict = 'caught' if caught else ('missed (equivalent)' if name in EQUIVALENT
                                           else 'MISSED')
        missed += verdict == 'MISSED'
        print(f'{name:26s} {verdict} {time.monotonic() - start:5.1f} s {why[:110]}',
              flush=True)
    return 1 if missed else 0


if __name__ == '__main__':
    raise SystemExit(main())
