"""Point the ROS 2 wheels' CMake files at this venv instead of the wheel builder's Python.

The PyPI ROS 2 wheels are built in a manylinux container and their CMake export files
hard-code its interpreter paths (/opt/python/cp311-cp311/...). colcon builds of packages
that generate messages read those files, so rewrite them to this interpreter's paths.
Idempotent: files without the builder's path are left untouched.
"""

import pathlib
import sys
import sysconfig

import numpy

BUILDER = '/opt/python/cp311-cp311'


def replacements() -> list[tuple[str, str]]:
    """Most specific first, so the bare prefix is replaced last."""
    include = sysconfig.get_paths()['include']
    return [
        (f'{BUILDER}/include/python3.11', include),
        (f'{BUILDER}/lib/python3.11/site-packages/numpy/_core/include', numpy.get_include()),
        (BUILDER, sys.prefix),
    ]


def main() -> int:
    share = pathlib.Path(sys.prefix) / 'share'
    changed = 0
    for path in share.glob('*/cmake/*.cmake'):
        text = path.read_text()
        if BUILDER not in text:
            continue
        for old, new in replacements():
            text = text.replace(old, new)
        path.write_text(text)
        changed += 1
    print(f'fix_ros_wheels: rewrote {changed} CMake file(s) under {share}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
