"""One line for a node parameter given with the wrong type, instead of rclpy's traceback.

rclpy raises InvalidParameterTypeException from declare_parameter when an override
(`-p name:=value`, a params file) has another type than the parameter's default. ROS 2 does
not convert: `-p pid.kp:=2` is an INTEGER and pid.kp a DOUBLE, the commonest slip, so the
line says to write 2.0. No rclpy import here: the nodes catch the exception and pass it in.
"""

import re

_RCLPY = re.compile(r"Trying to set parameter '(?P<name>[^']*)' to '(?P<value>[^']*)' of type "
                    r"'(?P<given>\w+)', expecting type '(?P<wanted>\w+)'")


def parameter_type_message(exc: Exception) -> str:
    """What was given, what the parameter takes, and the fix for an integer given a double."""
    text = str(exc.args[0] if exc.args else exc)
    found = _RCLPY.search(text)
    if found is None:
        return text
    name, value, given, wanted = found.group('name', 'value', 'given', 'wanted')
    kind = wanted.lower()
    line = f"parameter {name} takes {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got " \
           f"{given.lower()} '{value}'"
    if wanted == 'DOUBLE' and given == 'INTEGER':
        line += f' (write {value}.0)'
    return line
