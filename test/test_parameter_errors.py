"""A node parameter of the wrong type or out of its range is one line and exit 2, on every
node, not a traceback.

ROS 2 does not convert `-p pid.kp:=2` (an INTEGER) into the DOUBLE pid.kp takes: rclpy
raises from declare_parameter. The line names the parameter, both types and the fix.
"""

import pathlib
import subprocess

import pytest

from autopilot_ros.parameter_errors import parameter_error_message


class _Raised(Exception):  # rclpy's InvalidParameter*Exception carry the same texts
    pass


def test_the_line_names_the_parameter_both_types_and_the_fix():
    exc = _Raised("Trying to set parameter 'pid.kp' to '2' of type 'INTEGER', expecting type "
                  "'DOUBLE': pid.kp")
    assert parameter_error_message(exc) == \
        "parameter pid.kp takes a double, got integer '2' (write 2.0)"
    exc = _Raised("Trying to set parameter 'port' to 'x' of type 'STRING', expecting type "
                  "'INTEGER': port")
    assert parameter_error_message(exc) == "parameter port takes an integer, got string 'x'"
    exc = _Raised('Invalid parameter value (-5.0) for parameter. Reason: Parameter pid.kp out of '
                  'range Min: 0.0, Max: 10.0, value: -5.0: pid.kp')
    assert parameter_error_message(exc) == 'parameter pid.kp -5.0 is outside its range [0.0, 10.0]'
    assert parameter_error_message(_Raised('something else')) == 'something else'


@pytest.mark.dds
@pytest.mark.parametrize('node, given, line', [
    ('autopilot_node', 'pid.kp:=2', "parameter pid.kp takes a double, got integer '2' "
                                    '(write 2.0)'),
    ('autopilot_node', 'mode:=3', "parameter mode takes a string, got integer '3'"),
    ('autopilot_node', 'pid.kp:=-5.0', 'parameter pid.kp -5.0 is outside its range [0.0, 10.0]'),
    ('sim_node', 'real_time_factor:=fast',
     "parameter real_time_factor takes a double, got string 'fast'"),
    ('helm_node', 'port:=x', "parameter port takes an integer, got string 'x'"),
    ('instruments_node', 'imu_combine_s:=1',
     "parameter imu_combine_s takes a double, got integer '1' (write 1.0)"),
])
def test_every_node_says_it_in_one_line_and_exits_2(tmp_path, node, given, line):
    from ament_index_python.packages import get_package_prefix
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros' / node
    out = subprocess.run([str(exe), '--ros-args', '-p', given], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == f'{node}: {line}'
    assert 'Traceback' not in out.stdout + out.stderr
