"""What the launch file decides, kept here so it is testable without `launch`."""

import os
import shutil

MODEL_FILE = 'autopilot.onnx'


def default_params_file(share_dir: str) -> str:
    return os.path.join(share_dir, 'config', 'autopilot.yaml')


def default_model_path(share_dir: str) -> str:
    """The shipped model, or '' (PID pilot only) while no model has earned shipping."""
    path = os.path.join(share_dir, 'resource', MODEL_FILE)
    return path if os.path.isfile(path) else ''


def rviz_config(share_dir: str) -> str:
    return os.path.join(share_dir, 'resource', 'autopilot.rviz')


# sim_node publishes a step's samples before its /clock: they lead the node's sim clock by
# up to one 50 ms step (and some jitter), more than a real instrument's 0.05 s allowance.
SIM_STAMP_TOLERANCE = 0.1


def node_parameters(params_file: str, *, model_path: str, use_sim_time: bool,
                    hand_steering: bool, sim: bool = False) -> list:
    """The autopilot node's `parameters=` in the order ROS applies them (later wins).

    `model_path` goes in only when the command line gave one, so the precedence is: command
    line > params file > the node's own default (the shipped model). With the package's
    simulator, the stamp tolerance is SIM_STAMP_TOLERANCE.
    """
    overrides: dict = {'use_sim_time': use_sim_time, 'hand_steering': hand_steering}
    if model_path.strip():
        overrides['model_path'] = model_path.strip()
    if sim:
        overrides['stamp_future_tolerance'] = SIM_STAMP_TOLERANCE
    return [params_file, overrides]


def rviz_missing() -> str:
    """'' when rviz2 can be started here, else the one line that says what to install."""
    if shutil.which('rviz2'):
        return ''
    try:
        from ament_index_python.packages import get_package_prefix
        get_package_prefix('rviz2')
        return ''
    except Exception:  # noqa: BLE001 - no ament index, or no rviz2 in it
        return ('rviz:=true but rviz2 is not installed here (sudo apt install '
                'ros-$ROS_DISTRO-rviz2); nothing was started')
