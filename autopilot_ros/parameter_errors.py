"""One line for a node parameter rclpy refuses at start, instead of rclpy's traceback.

rclpy raises from declare_parameter when an override (`-p name:=value`, a params file) has
another type than the parameter's default (InvalidParameterTypeException) or lies outside
the range its descriptor declares (InvalidParameterValueException). ROS 2 does not convert:
`-p pid.kp:=2` is an INTEGER and pid.kp a DOUBLE, the commonest slip, so the line says to
write 2.0. No rclpy import here: the nodes catch the exceptions and pass them in.
"""

import re

_TYPE = re.compile(r"Trying to set parameter '(?P<name>[^']*)' to '(?P<value>[^']*)' of type "
                   r"'(?P<given>\w+)', expecting type '(?P<wanted>\w+)'")
_RANGE = re.compile(r'Parameter (?P<name>\S+) out of range Min: (?P<low>\S+), Max: '
                    r'(?P<high>[^\s,]+), value: (?P<value>[^\s:]+)')


def parameter_error_message(exc: Exception) -> str:
    """What was given and what the parameter takes (its type or range), with the fix for an
    integer given for a double; rclpy's own text for anything else."""
    text = str(exc.args[0] if exc.args else exc)
    found = _TYPE.search(text)
    if found is not None:
        name, value, given, wanted = found.group('name', 'value', 'given', 'wanted')
        kind = wanted.lower()
        line = f"parameter {name} takes {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got " \
               f"{given.lower()} '{value}'"
        if wanted == 'DOUBLE' and given == 'INTEGER':
            line += f' (write {value}.0)'
        return line
    found = _RANGE.search(text)
    if found is not None:
        name, low, high, value = found.group('name', 'low', 'high', 'value')
        return f'parameter {name} {value} is outside its range [{low}, {high}]'
    return text
